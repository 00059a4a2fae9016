"""SavedModel export (issue 8): reloaded in a fresh process, it gives the in-process masks.

The tiny model is trained 4 steps and exported once per session
(`tests/tasks/exported_models.py`); a subprocess (`saved_model_runner`) loads
the export, with none of the project's code, and runs every signature and the
bad requests. The reference masks are computed here from the building blocks
(EvalParser geometry, `sampler.sample`, post-processing, `label_map_to_original`)
with the checkpoint's EMA weights restored independently of `tasks.export`.
"""

import glob
import io
import json
import os
import pickle
import subprocess
import sys

import gin
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from data import decoders
from data import parsers
from data import records
from models import pix2seq_d
from models import sampler
from tasks import config
from tasks import export
from tasks import postprocess
from tests.tasks import exported_models

REPO = exported_models.REPO
COCO_IMAGES = ('coco_panoptic_real/input_images/000000142238.jpg',
               'coco_panoptic_real/input_images/000000439180.jpg')
CITYSCAPES_IMAGE = ('cityscapes_panoptic_real/leftImg8bit/'
                    'dummy_000000_000000_leftImg8bit.png')
OUTPUT_KEYS = {'panoptic_category_mask', 'panoptic_instance_mask',
               'original_size', 'image_info', 'class_ids', 'class_names',
               'category_ids', 'class_isthing'}


# ----------------------------------------------------------------------------
# Helpers.


def run_requests(export_dir, requests, tmp_path):
  """Runs `requests` in a fresh process (`saved_model_runner`); returns its results."""
  requests_path = tmp_path / 'requests.pkl'
  results_path = tmp_path / 'results.pkl'
  with open(requests_path, 'wb') as f:
    pickle.dump(requests, f)
  result = subprocess.run(
      [sys.executable, '-m', 'tests.tasks.saved_model_runner', export_dir,
       str(requests_path), str(results_path)],
      cwd=REPO, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
  assert result.returncode == 0, result.stderr[-5000:]
  with open(results_path, 'rb') as f:
    return pickle.load(f)


def ema_model(model_dir, checkpoint=None, use_ema=True):
  """The model of `model_dir`'s config.gin with the checkpoint's EMA (or raw) weights."""
  gin.clear_config()
  try:
    config.import_configurables()
    config.parse_gin([os.path.join(model_dir, config.CONFIG_NAME)], [],
                     finalize=False)
    model = pix2seq_d.build_model()
    ema = pix2seq_d.build_ema(model)
  finally:
    gin.clear_config()
  checkpoint = checkpoint or tf.train.latest_checkpoint(model_dir)
  tf.train.Checkpoint(model=model, ema=ema).read(checkpoint).expect_partial()
  if use_ema:
    ema.copy_to_model()
  return model


def reference(model, images, info, *, num_steps, td, seed, past=None,
              trajectory_size=0):
  """In-process masks for a batch of uint8 images (one batch: the same noise).

  Returns:
    dict: `label_map` int32 [B, h, w, 2] (post-processed, mask size),
    `originals` list of [H_b, W_b, 2], `image_info` [B, 4, 2] and, with
    `trajectory_size`, `trajectory` [B, T, h, w, 2].
  """
  image_size = tuple(info['image_size'])
  prepared, infos = [], []
  for image in images:
    image_info = parsers.compute_image_info(tf.shape(image)[:2], image_size)
    prepared.append(parsers.pad_to_size(
        parsers.resize_and_crop_image(tf.constant(image), image_info,
                                      image_size, antialias=info['antialias']),
        image_size, info['pad_value']))
    infos.append(image_info)
  outputs = sampler.sample(
      model, tf.stack(prepared), mask_size=tuple(info['mask_size']),
      num_steps=num_steps, td=td, seed=tf.constant(seed, tf.int32),
      past_label_maps=None if past is None else tf.constant(past, tf.int32),
      trajectory_size=trajectory_size, readout=info['readout'])
  # The export's post-processing settings (the experiment's: coco_stage1 has
  # the authors' min_pixels at the original size and void votes).
  stuff = (postprocess.stuff_class_ids(info['categories'])
           if info['stuff_as_one_segment'] else ())
  stage = lambda label_map, at: postprocess.postprocess_stage(
      label_map, at, min_pixels=info['min_pixels'],
      min_pixels_at=info['min_pixels_at'], void_votes=info['void_votes'],
      num_valid_classes=len(info['categories']), stuff_class_ids=stuff)
  label_map = stage(outputs['label_map'], 'mask')
  originals = [stage(parsers.label_map_to_original(
      label_map[i], infos[i], image_size)[tf.newaxis], 'original')[0].numpy()
               for i in range(len(images))]
  result = {
      'label_map': label_map.numpy(),
      'originals': originals,
      'image_info': np.stack([i.numpy() for i in infos]),
  }
  if trajectory_size:
    result['trajectory'] = np.transpose(
        outputs['trajectory'].numpy()[:num_steps], [1, 0, 2, 3, 4])
  return result


def assert_masks_equal(outputs, expected_originals):
  """Signature outputs (padded to the batch's largest size) equal the reference."""
  sizes = [m.shape[:2] for m in expected_originals]
  np.testing.assert_array_equal(outputs['original_size'], sizes)
  max_h, max_w = np.max(sizes, axis=0)
  assert outputs['panoptic_category_mask'].shape == (len(sizes), max_h, max_w)
  for i, expected in enumerate(expected_originals):
    h, w = expected.shape[:2]
    category = outputs['panoptic_category_mask'][i]
    instance = outputs['panoptic_instance_mask'][i]
    np.testing.assert_array_equal(category[:h, :w], expected[..., 0])
    np.testing.assert_array_equal(instance[:h, :w], expected[..., 1])
    # Padding is void.
    assert not category[h:].any() and not category[:, w:].any()
    assert not instance[h:].any() and not instance[:, w:].any()


def decoded(data: bytes) -> np.ndarray:
  return decoders.decode_image(tf.constant(data)).numpy()


def png_bytes(image: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format='PNG')
  return buffer.getvalue()


# ----------------------------------------------------------------------------
# The image model.


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  return exported_models.image_export(tmp_path_factory)


@pytest.fixture(scope='module')
def model(exported):
  return ema_model(exported['model_dir'])


@pytest.fixture(scope='module')
def inputs(exported):
  fixtures = os.path.join(REPO, '..', 'shared', 'fixtures')
  coco = [open(os.path.join(fixtures, p), 'rb').read() for p in COCO_IMAGES]
  cityscapes = open(os.path.join(fixtures, CITYSCAPES_IMAGE), 'rb').read()
  examples = [r.numpy() for r in tf.data.TFRecordDataset(
      sorted(glob.glob(exported['records']['val'])))]
  # Two same-size crops for the image_tensor batch.
  tensor_batch = np.stack([decoded(coco[0])[:360], decoded(coco[1])[:360]])
  return dict(bytes_batch=[coco[0], coco[1], cityscapes], examples=examples,
              tensor_batch=tensor_batch)


def _options(num_steps, td, seed):
  return dict(num_steps=np.int32(num_steps), td=np.float32(td),
              seed=np.array(seed, np.int32))


BAD_REQUESTS = {
    # name: (signature, inputs without the options, expected message part)
    'undecodable_bytes': ('serving_default',
                          dict(image_bytes=np.array([b'not an image'])),
                          'Unknown image file format'),
    'png_claiming_10_gigapixels': ('serving_default', dict(image_bytes=np.array(
        [b'\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR' +
         (100000).to_bytes(4, 'big') * 2 + b'\x08\x02\x00\x00\x00'],
        object)), 'image larger than 100000000 pixels'),
    'empty_batch': ('serving_default',
                    dict(image_bytes=np.array([], np.bytes_)),
                    'empty batch'),
    'bytes_rank_2': ('serving_default',
                     dict(image_bytes=np.array([[b'a', b'b']])),
                     'Shape of tensor image_bytes [1,2] is not compatible'),
    'float_tensor': ('image_tensor',
                     dict(image_tensor=np.zeros([1, 8, 8, 3], np.float32)),
                     'uint8'),
    'tensor_rank_3': ('image_tensor',
                      dict(image_tensor=np.zeros([8, 8, 3], np.uint8)),
                      'Shape of tensor image_tensor [8,8,3] is not compatible'),
    'tensor_4_channels': ('image_tensor',
                          dict(image_tensor=np.zeros([1, 8, 8, 4], np.uint8)),
                          'expected shape [?,?,?,3]'),
    'zero_height': ('image_tensor',
                    dict(image_tensor=np.zeros([1, 0, 8, 3], np.uint8)),
                    'image height and width must be > 0'),
    'example_without_image': ('tf_example', dict(tf_example=np.array(
        [tf.train.Example().SerializeToString()])), 'image/encoded'),
    'example_garbage': ('tf_example', dict(tf_example=np.array([b'\x01\x02'])),
                        ''),
}
BAD_OPTIONS = {
    'zero_steps': (dict(num_steps=np.int32(0)), 'num_steps must be in [1, 1000]'),
    'too_many_steps': (dict(num_steps=np.int32(1001)),
                       'num_steps must be in [1, 1000]'),
    'steps_vector': (dict(num_steps=np.array([2, 3], np.int32)),
                     'Shape of tensor num_steps [2] is not compatible'),
    'negative_td': (dict(td=np.float32(-1.0)), 'td must be finite and >= 0'),
    'nan_td': (dict(td=np.float32(np.nan)), 'td must be finite and >= 0'),
    'seed_of_3': (dict(seed=np.array([1, 2, 3], np.int32)),
                  'Shape of tensor seed [3] is not compatible'),
}


@pytest.fixture(scope='module')
def results(exported, inputs, tmp_path_factory):
  """Every signature, the defaults and the bad requests, run in a fresh process."""
  options = _options(3, 1.5, (7, 1))
  small = np.zeros([1, 16, 16, 3], np.uint8)
  requests = [
      ('bytes', 'signature', 'serving_default',
       dict(image_bytes=np.array(inputs['bytes_batch'], object), **options)),
      ('tensor', 'signature', 'image_tensor',
       dict(image_tensor=inputs['tensor_batch'], **options)),
      ('example', 'signature', 'tf_example',
       dict(tf_example=np.array(inputs['examples'], object), **options)),
      ('trajectory', 'signature', 'trajectory',
       dict(image_tensor=inputs['tensor_batch'][:1], **options)),
      ('defaults', 'function', 'image_bytes',
       dict(image_bytes=np.array(inputs['bytes_batch'][:1], object))),
  ]
  for name, (signature, request, _) in BAD_REQUESTS.items():
    requests.append((name, 'signature', signature, dict(request, **options)))
  for name, (changes, _) in BAD_OPTIONS.items():
    requests.append((name, 'signature', 'image_tensor',
                     dict(image_tensor=small, **dict(options, **changes))))
  requests.append(('after_errors', 'signature', 'image_tensor',
                   dict(image_tensor=small, **options)))
  return run_requests(exported['export_dir'], requests,
                      tmp_path_factory.mktemp('runner'))


def test_export_program_writes_info_defaults_and_no_temporary_folder(exported):
  info = exported['info']
  assert json.loads(exported['export_stdout'])['global_step'] == 4
  # From the training config (coco_stage1_tiny.gin's evaluator bindings).
  assert info['image_size'] == [64, 64] and info['mask_size'] == [32, 32]
  assert (info['num_steps'], info['td'], info['min_pixels']) == (2, 2.0, 4)
  assert info['used_ema'] and info['global_step'] == 4
  assert info['checkpoint'].endswith('ckpt-4')
  assert info['num_past_frames'] == 0
  assert info['signatures'] == sorted(export.IMAGE_SIGNATURES)
  table = records.read_categories(exported['records']['categories'])
  assert [(c['class_id'], c['id'], c['name'], c['isthing'])
          for c in info['categories']] == [
              (c['class_id'], c['id'], c['name'], c['isthing']) for c in table]
  defaults = export.signature_defaults(exported['export_dir'])
  for signature in export.IMAGE_SIGNATURES:
    assert int(defaults[signature]['num_steps']) == 2
    assert float(defaults[signature]['td']) == 2.0
    np.testing.assert_array_equal(defaults[signature]['seed'], [0, 0])
  parent = os.path.dirname(exported['export_dir'])
  assert os.listdir(parent) == ['1']  # Renamed into place, nothing left over.


def test_exported_weights_are_the_ema_weights(exported, model):
  gin.clear_config()
  config.import_configurables()
  config.parse_gin([os.path.join(exported['model_dir'], config.CONFIG_NAME)],
                   [], finalize=False)
  fresh = pix2seq_d.build_model()
  gin.clear_config()
  # The SavedModel's variables are a checkpoint of the exported module, whose
  # `model` attribute is the model.
  status = tf.train.Checkpoint(model=fresh).read(
      os.path.join(exported['export_dir'], 'variables', 'variables'))
  status.expect_partial().assert_existing_objects_matched()
  for got, want in zip(fresh.variables, model.variables):
    np.testing.assert_array_equal(got.numpy(), want.numpy(), err_msg=got.path)
  # ... and differ from the raw weights of the same checkpoint (EMA decay 0.5).
  tf.train.Checkpoint(model=fresh).read(
      tf.train.latest_checkpoint(exported['model_dir'])).expect_partial()
  differ = sum(not np.array_equal(raw.numpy(), ema.numpy())
               for raw, ema in zip(fresh.trainable_variables,
                                   model.trainable_variables))
  assert differ > 10


def test_every_signature_in_a_fresh_process_matches_the_in_process_model(
    exported, model, inputs, results):
  info = exported['info']
  assert results['__signatures__'] == sorted(export.IMAGE_SIGNATURES)
  kwargs = dict(num_steps=3, td=1.5, seed=(7, 1))
  table = info['categories']
  segments = 0
  for name, images in (
      ('bytes', [decoded(b) for b in inputs['bytes_batch']]),
      ('tensor', list(inputs['tensor_batch'])),
      ('example', [decoders.decode_panoptic_example(tf.constant(e))['image']
                   .numpy() for e in inputs['examples']])):
    assert 'outputs' in results[name], results[name]
    outputs = results[name]['outputs']
    assert set(outputs) == OUTPUT_KEYS
    expected = reference(model, images, info, **kwargs)
    assert_masks_equal(outputs, expected['originals'])
    np.testing.assert_allclose(outputs['image_info'], expected['image_info'])
    np.testing.assert_array_equal(outputs['class_ids'],
                                  [c['class_id'] for c in table])
    assert [n.decode() for n in outputs['class_names']] == [
        c['name'] for c in table]
    np.testing.assert_array_equal(outputs['category_ids'],
                                  [c['id'] for c in table])
    np.testing.assert_array_equal(outputs['class_isthing'],
                                  [c['isthing'] for c in table])
    segments += len(np.unique(outputs['panoptic_instance_mask'])) - 1
  assert segments > 0  # Not all void: the comparison means something.
  # Images of different sizes in one batch: padded to the largest.
  assert results['bytes']['outputs']['panoptic_category_mask'].shape[1:] == (
      max(decoded(b).shape[0] for b in inputs['bytes_batch']),
      max(decoded(b).shape[1] for b in inputs['bytes_batch']))


def test_trajectory_signature_returns_every_step(exported, model, inputs,
                                                 results):
  outputs = results['trajectory']['outputs']
  assert set(outputs) == OUTPUT_KEYS | {'trajectory'}
  expected = reference(model, list(inputs['tensor_batch'][:1]), exported['info'],
                       num_steps=3, td=1.5, seed=(7, 1), trajectory_size=50)
  assert outputs['trajectory'].shape == (1, 3, 32, 32, 2)
  np.testing.assert_array_equal(outputs['trajectory'], expected['trajectory'])
  assert_masks_equal(outputs, expected['originals'])


def test_optional_inputs_take_the_config_defaults(exported, model, inputs,
                                                  results):
  info = exported['info']
  expected = reference(model, [decoded(inputs['bytes_batch'][0])], info,
                       num_steps=info['num_steps'], td=info['td'], seed=(0, 0))
  assert_masks_equal(results['defaults']['outputs'], expected['originals'])


@pytest.mark.parametrize('name', sorted(BAD_REQUESTS) + sorted(BAD_OPTIONS))
def test_bad_requests_fail_with_invalid_argument(results, name):
  error = results[name].get('error')
  assert error is not None, f'{name} was accepted'
  assert error[0] == 'InvalidArgumentError', error
  message = (BAD_REQUESTS.get(name) or (None, None, BAD_OPTIONS[name][1]))[-1]
  assert message in error[1], error[1][:2000]


def test_the_process_serves_on_after_bad_requests(results):
  assert results['after_errors']['outputs']['original_size'].tolist() == [[16, 16]]


def test_saved_model_cli_lists_the_signatures(exported):
  cli = os.path.join(os.path.dirname(sys.executable), 'saved_model_cli')
  result = subprocess.run([cli, 'show', '--dir', exported['export_dir'], '--all'],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
  assert result.returncode == 0, result.stderr[-3000:]
  text = result.stdout
  for signature in export.IMAGE_SIGNATURES:
    assert f"signature_def['{signature}']" in text
  for name in ('image_bytes', 'image_tensor', 'tf_example', 'num_steps', 'td',
               'seed', 'trajectory', *OUTPUT_KEYS):
    assert f"['{name}']" in text, name


def test_resolve_checkpoint(exported, tmp_path):
  model_dir = exported['model_dir']
  assert export.resolve_checkpoint(model_dir).endswith('ckpt-4')
  older = os.path.join(model_dir, 'ckpt-2')
  assert export.resolve_checkpoint(model_dir, older) == older
  with pytest.raises(FileNotFoundError, match='ckpt-9'):
    export.resolve_checkpoint(model_dir, os.path.join(model_dir, 'ckpt-9'))
  with pytest.raises(FileNotFoundError, match='no checkpoint'):
    export.resolve_checkpoint(str(tmp_path))


def test_export_never_leaves_a_half_written_folder(exported, tmp_path,
                                                   monkeypatch):
  export.parse_export_gin(exported['model_dir'], finalize=False)
  with pytest.raises(FileExistsError, match='--overwrite'):
    export.export_saved_model(exported['model_dir'], exported['export_dir'])

  def failing_save(obj, export_dir, **kwargs):
    del obj, kwargs
    os.makedirs(os.path.join(export_dir, 'variables'))
    with open(os.path.join(export_dir, 'saved_model.pb'), 'wb') as f:
      f.write(b'half')
    raise RuntimeError('disk full')

  monkeypatch.setattr(tf.saved_model, 'save', failing_save)
  target = tmp_path / 'export' / '1'
  target.parent.mkdir()
  with pytest.raises(RuntimeError, match='disk full'):
    export.export_saved_model(exported['model_dir'], str(target))
  assert os.listdir(target.parent) == []


def test_settings_without_a_source_are_named(exported):
  gin.clear_config()
  config.import_configurables()
  config.parse_gin(['model/pix2seq_d_tiny.gin'], [], finalize=False)
  with pytest.raises(ValueError, match='categories_json'):
    export.export_saved_model(exported['model_dir'], '/nonexistent/export')


# ----------------------------------------------------------------------------
# The video model.


@pytest.fixture(scope='module')
def video(tmp_path_factory):
  return exported_models.video_export(tmp_path_factory)


@pytest.fixture(scope='module')
def video_model(video):
  return ema_model(video['model_dir'])


def _frames():
  fixtures = os.path.join(REPO, '..', 'shared', 'fixtures')
  image = decoded(open(os.path.join(fixtures, COCO_IMAGES[0]), 'rb').read())
  return image[:300, :400], image[10:310, 12:412]


def test_video_signatures_stream_frames_without_server_state(
    video, video_model, tmp_path):
  info = video['info']
  assert info['num_past_frames'] == 2 and info['past_frame_offsets'] == [-2, -1]
  assert info['signatures'] == sorted(export.IMAGE_SIGNATURES +
                                      export.VIDEO_SIGNATURES)
  assert (info['num_steps'], info['td'], info['min_pixels']) == (3, 1.0, 2)
  frame0, frame1 = _frames()
  kwargs = dict(num_steps=3, td=1.0, seed=(5, 0))
  none = np.zeros([1, 2, 32, 32, 2], np.int32)
  first = reference(video_model, [frame0], info, past=none, **kwargs)
  past1 = np.concatenate([none[:, 1:], first['label_map'][:, None]], axis=1)
  kwargs1 = dict(kwargs, seed=(5, 1))
  second = reference(video_model, [frame1], info, past=past1, **kwargs1)
  assert len(np.unique(first['label_map'][..., 1])) > 2  # Not all void.
  too_big = past1.copy()
  too_big[0, 0, 0, 0, 1] = 256
  requests = [
      ('frame0', 'signature', 'serving_video_tensor',
       dict(image_tensor=frame0[None], past_label_maps=none, **_options(**kwargs))),
      ('frame1', 'signature', 'serving_video',
       dict(image_bytes=np.array([png_bytes(frame1)], object),
            past_label_maps=past1, **_options(**kwargs1))),
      ('image', 'signature', 'image_tensor',
       dict(image_tensor=frame0[None], **_options(**kwargs))),
      ('one_past_frame', 'signature', 'serving_video_tensor',
       dict(image_tensor=frame0[None], past_label_maps=none[:, :1],
            **_options(**kwargs))),
      ('past_out_of_range', 'signature', 'serving_video_tensor',
       dict(image_tensor=frame0[None], past_label_maps=too_big,
            **_options(**kwargs))),
      ('past_batch_mismatch', 'signature', 'serving_video_tensor',
       dict(image_tensor=frame0[None],
            past_label_maps=np.concatenate([none, none]), **_options(**kwargs))),
  ]
  results = run_requests(video['export_dir'], requests, tmp_path)
  assert results['__signatures__'] == sorted(info['signatures'])
  outputs0 = results['frame0']['outputs']
  assert set(outputs0) == OUTPUT_KEYS | {'label_map', 'next_past_label_maps'}
  assert_masks_equal(outputs0, first['originals'])
  np.testing.assert_array_equal(outputs0['label_map'], first['label_map'])
  np.testing.assert_array_equal(outputs0['next_past_label_maps'], past1)
  outputs1 = results['frame1']['outputs']
  assert_masks_equal(outputs1, second['originals'])
  np.testing.assert_array_equal(outputs1['label_map'], second['label_map'])
  # Image signatures of a video model condition on void past masks.
  assert_masks_equal(results['image']['outputs'], first['originals'])
  assert [n.decode() for n in outputs0['class_names']] == [
      c['name'] for c in exported_models.VIDEO_CATEGORIES]
  for name, message in (('one_past_frame',
                         'Shape of tensor past_label_maps [1,1,32,32,2]'),
                        ('past_out_of_range', 'past_label_maps values'),
                        ('past_batch_mismatch', 'one entry per image')):
    error = results[name].get('error')
    assert error is not None and error[0] == 'InvalidArgumentError', (name, error)
    assert message in error[1], error[1][:2000]


def test_serving_merges_stuff_segments_and_takes_the_readout():
  """`stuff_as_one_segment` and `readout` reach the serving module (no export)."""
  gin.clear_config()
  try:
    config.import_configurables()
    config.parse_gin(['model/pix2seq_d_tiny.gin'], [], finalize=False)
    model = pix2seq_d.build_model()
  finally:
    gin.clear_config()
  categories = [dict(class_id=1, id=5, name='disc', isthing=1),
                dict(class_id=2, id=9, name='sky', isthing=0)]
  label_map = np.zeros([1, 32, 32, 2], np.int32)
  label_map[0, :, :16] = [2, 3]
  label_map[0, :, 16:] = [2, 4]
  label_map[0, :4, :4] = [1, 7]
  outputs = {}
  for merge in (False, True):
    module = export.PanopticServingModule(
        model, categories=categories, image_size=(64, 64), mask_size=(32, 32),
        min_pixels=0, stuff_as_one_segment=merge)
    outputs[merge] = module._postprocess(  # pylint: disable=protected-access
        tf.constant(label_map), 'mask').numpy()[0]
    assert module.export_info()['stuff_as_one_segment'] is merge
  np.testing.assert_array_equal(outputs[False], label_map[0])
  sky = label_map[0, ..., 0] == 2
  # The whole sky takes the larger part's id (512 vs 496 pixels).
  assert set(np.unique(outputs[True][..., 1][sky])) == {4}
  kwargs = dict(categories=categories, image_size=(64, 64), mask_size=(32, 32))
  module = export.PanopticServingModule(model, readout='argmax', **kwargs)
  assert module.export_info()['readout'] == 'argmax'
  with pytest.raises(ValueError, match="readout='max'"):
    export.PanopticServingModule(model, readout='max', **kwargs)
  assert np.sum(outputs[True][..., 1] == 7) == 16
