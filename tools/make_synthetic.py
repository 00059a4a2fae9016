r"""Writes the built-in synthetic datasets in the real formats (data/synthetic.py).

  python -m tools.make_synthetic --output_dir=synthetic --num_train=1000 \
    --num_val=200 --image_size=64 --seed=0 [--video --num_videos=40]
  python -m tools.create_coco_panoptic_tfrecord \
    --annotations_json=synthetic/annotations/panoptic_train.json \
    --panoptic_dir=synthetic/panoptic/train --image_dir=synthetic/images/train \
    --output_prefix=records/synthetic/train --num_shards=4
  python -m tools.create_davis_tfrecord --davis_root=synthetic --split=train \
    --output_prefix=records/synthetic_video/train --num_shards=4

Images: COCO panoptic layout (4 shape thing classes, 2 stuff classes, void).
Videos (--video): DAVIS 2017 layout. Same --seed, same bytes.
"""

from absl import app
from absl import flags

from data import synthetic

_OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'Dataset root.',
                                  required=True)
_NUM_TRAIN = flags.DEFINE_integer('num_train', 1000, 'Training images.')
_NUM_VAL = flags.DEFINE_integer('num_val', 200, 'Validation images.')
_IMAGE_SIZE = flags.DEFINE_integer('image_size', 64,
                                   'Side of the square images and frames.')
_SEED = flags.DEFINE_integer('seed', 0, 'Random seed (same seed, same bytes).')
_VIDEO = flags.DEFINE_bool('video', False,
                           'Also write videos in the DAVIS 2017 layout.')
_NUM_VIDEOS = flags.DEFINE_integer('num_videos', 40, 'Training videos.')
_NUM_VAL_VIDEOS = flags.DEFINE_integer('num_val_videos', 10,
                                       'Validation videos.')
_NUM_FRAMES = flags.DEFINE_integer('num_frames', 20, 'Frames per video.')
_NUM_WORKERS = flags.DEFINE_integer('num_workers', 1,
                                    'Processes rendering images and videos.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  written = synthetic.make_synthetic(
      _OUTPUT_DIR.value, num_train=_NUM_TRAIN.value, num_val=_NUM_VAL.value,
      image_size=_IMAGE_SIZE.value, seed=_SEED.value, video=_VIDEO.value,
      num_videos=_NUM_VIDEOS.value, num_val_videos=_NUM_VAL_VIDEOS.value,
      num_frames=_NUM_FRAMES.value, num_workers=_NUM_WORKERS.value)
  for name, path in sorted(written.items()):
    print(f'{name}: {path}')


if __name__ == '__main__':
  app.run(main)
