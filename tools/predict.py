r"""Panoptic masks for image files, or streamed video frames, with an exported model (issue 8).

  python -m tools.predict --saved_model=/tmp/p2sd_export/1 \
      --input=photos/ --output_dir=/tmp/predictions [--num_steps=20] [--td=2.0] \
      [--trajectory]
  python -m tools.predict --saved_model=/tmp/p2sd_video_export/1 --video \
      --input=DAVIS/JPEGImages/480p/bike-packing --output_dir=/tmp/davis_pred \
      [--first_frame_num_steps=32 --num_steps=8 --td=1.0]

Images give `<name>_overlay.png`, COCO panoptic `panoptic/<name>.png` +
`panoptic.json` (readable by `tools.evaluate_panoptic`) and, with
--trajectory, `<name>_trajectory.png`; videos give DAVIS-layout masks
(`masks/<seq>/<frame>.png`, readable by `tools.evaluate_davis`), overlays and
`<seq>.gif`. Files that are not images are reported and skipped. Details:
`tasks/predict.py`.
"""

from absl import app
from absl import flags

from tasks import predict

FLAGS = flags.FLAGS
flags.DEFINE_string('saved_model', None, 'Export folder (tools.export_saved_model).')
flags.DEFINE_string('input', None, 'An image, a folder of images, or (--video) a '
                    'folder of frames / of sequence folders.')
flags.DEFINE_string('output_dir', None, 'Where to write the results.')
flags.DEFINE_integer('num_steps', None, 'DDIM steps (default: the export\'s).')
flags.DEFINE_integer('first_frame_num_steps', None, '--video: steps for the first '
                     'frame (default --num_steps).')
flags.DEFINE_integer('max_video_objects', predict.DAVIS_MAX_PROPOSALS,
                     '--video: objects per sequence in the DAVIS masks (first '
                     'appearance; DAVIS evaluation takes 20).')
flags.DEFINE_float('td', None, 'Time difference (default: the export\'s).')
flags.DEFINE_integer('seed', 0, 'Noise seed.')
flags.DEFINE_bool('trajectory', False, 'Also draw the mask of every denoising step.')
flags.DEFINE_bool('video', False, 'Stream --input as video frames.')
flags.DEFINE_bool('progress', True, 'Show a progress bar.')
flags.mark_flags_as_required(['saved_model', 'input', 'output_dir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if FLAGS.video:
    if FLAGS.trajectory:
      raise app.UsageError('--trajectory is for images, not --video.')
    summary = predict.predict_video(
        FLAGS.saved_model, FLAGS.input, FLAGS.output_dir,
        num_steps=FLAGS.num_steps,
        first_frame_num_steps=FLAGS.first_frame_num_steps, td=FLAGS.td,
        seed=FLAGS.seed, max_objects=FLAGS.max_video_objects,
        progress=FLAGS.progress)
    count = sum(len(v) for v in summary['frames'].values())
    print(f'wrote {count} frames of {len(summary["frames"])} sequence(s) to '
          f'{FLAGS.output_dir}')
  else:
    summary = predict.predict_images(
        FLAGS.saved_model, FLAGS.input, FLAGS.output_dir,
        num_steps=FLAGS.num_steps, td=FLAGS.td, seed=FLAGS.seed,
        trajectory=FLAGS.trajectory, progress=FLAGS.progress)
    print(f'wrote {len(summary["predicted"])} prediction(s) to {FLAGS.output_dir}')
  for path, reason in summary['skipped'].items():
    print(f'skipped {path}: {reason}')


if __name__ == '__main__':
  app.run(main)
