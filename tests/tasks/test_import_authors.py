"""Tests for tasks/import_authors.py: the authors' checkpoints compute their numbers in ours.

The fixtures (`../shared/fixtures/authors/`, NOTES.md there) were made by running
the authors' code: a small Pix2Seq-D trainer checkpoint with its `config.json`
and the outputs of its EMA weights on stored inputs (`io.npz`), and a small
checkpoint of the Objects365 detection model's layout with its encoder outputs.
"""

import os
import shutil
import subprocess
import sys

import gin
import numpy as np
import pytest
import tensorflow as tf

from models import bits as bits_lib
from models import pix2seq_d
from models import sampler
from tasks import authors_config
from tasks import config
from tasks import export
from tasks import import_authors
from tasks import train_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AUTHORS = os.path.join(os.path.dirname(REPO), 'shared', 'fixtures', 'authors')
PANOPTIC = os.path.join(AUTHORS, 'pix2seq_d_small')
DETECTION = os.path.join(AUTHORS, 'obj365_detection_layout', 'small_resnetc')
TOLERANCE = 1e-4


def _model_from(model_dir, bindings=()):
  gin.clear_config()
  config.import_configurables()
  config.parse_gin([os.path.join(model_dir, config.CONFIG_NAME)], bindings,
                   finalize=False)
  model = pix2seq_d.build_model()
  return model, pix2seq_d.build_ema(model)


@pytest.fixture(scope='module')
def panoptic(tmp_path_factory):
  """Their Pix2Seq-D imported; our model holding the imported EMA weights."""
  if not os.path.isdir(PANOPTIC):
    pytest.fail(f'authors fixtures not found at {AUTHORS}')
  out = str(tmp_path_factory.mktemp('imported') / 'model_dir')
  gin.clear_config()
  report = import_authors.import_checkpoint(os.path.join(PANOPTIC, 'ckpt'),
                                            'pix2seq_d', out)
  model, ema = _model_from(out)
  tf.train.Checkpoint(model=model, ema=ema).read(
      report['checkpoint']).assert_existing_objects_matched()
  online = {v.path: v.numpy() for v in model.variables}
  ema.copy_to_model()
  gin.clear_config()
  return dict(report=report, out=out, model=model, online=online,
              io=dict(np.load(os.path.join(PANOPTIC, 'io.npz'))))


def test_pix2seq_d_mapping_is_complete(panoptic):
  report = panoptic['report']
  # Every model variable twice: online into the model, *_ema into our EMA.
  assert report['num_mapped'] == 2 * len(
      [v for v in panoptic['model'].variables if 'float' in str(v.dtype)])
  assert not [k for k in report['unused'] if k.startswith('model/')]
  assert report['unfilled'] == []
  assert any(k.startswith('optimizer/') for k in report['unused'])
  for name in (config.CONFIG_NAME, import_authors.MAPPING_NAME, 'checkpoint'):
    assert os.path.exists(os.path.join(panoptic['out'], name)), name
  text = open(os.path.join(panoptic['out'], import_authors.MAPPING_NAME)).read()
  assert ('model/denoiser_ema/transformer/transformer_decoder/dec_layers/0/'
          'self_mha/_query_dense/kernel + ') in text
  # Their step is kept.
  assert report['checkpoint'].endswith('ckpt-2')


def test_encoder_equals_authors(panoptic):
  model, io = panoptic['model'], panoptic['io']
  images = tf.constant(io['images'])
  stages = model.encoder.backbone(images, training=False)
  for stage, name in zip(stages, ('c2', 'c3', 'c4')):
    np.testing.assert_allclose(stage.numpy(), io[f'enc_resnet_{name}'],
                               atol=TOLERANCE, rtol=0)
  encoded = model.encode(images)
  np.testing.assert_allclose(encoded['tokens'].numpy(), io['enc_tokens'],
                             atol=TOLERANCE, rtol=0)
  np.testing.assert_allclose(encoded['feature_map'].numpy(), io['enc_fused'],
                             atol=TOLERANCE, rtol=0)


def test_decoder_equals_authors(panoptic):
  model, io = panoptic['model'], panoptic['io']
  encoded = {'tokens': tf.constant(io['enc_tokens']),
             'feature_map': tf.constant(io['enc_fused'])}
  gamma = tf.constant(io['dec_gamma'])
  np.testing.assert_allclose(model.decoder.time_embedding(gamma).numpy(),
                             io['dec_time_emb'], atol=TOLERANCE, rtol=0)
  logits, x0 = model.denoise(tf.constant(io['dec_x_t']), gamma, encoded)
  np.testing.assert_allclose(logits.numpy(), io['dec_logits'], atol=TOLERANCE,
                             rtol=0)
  np.testing.assert_allclose(x0.numpy(), io['dec_readout'], atol=TOLERANCE, rtol=0)


def test_ddim_run_gives_their_mask(panoptic):
  model, io = panoptic['model'], panoptic['io']
  out = sampler.sample(model, tf.constant(io['images']), mask_size=(32, 32),
                       num_steps=20, td=1.0, seed=[0, 0],
                       initial_noise=io['infer_noise'])
  ours, theirs = out['x0'].numpy(), io['infer_bits']
  # A bit may flip where theirs is within 1e-5 of zero (NOTES.md: 0.5% of pixels).
  flipped = (ours > 0) != (theirs > 0)
  assert np.all(np.abs(theirs[flipped]) < 1e-5)
  assert np.mean(np.any(flipped, axis=-1)) <= 0.005
  label_map = bits_lib.bits_to_label_map(out['x0'], (8, 8)).numpy()
  # Their bits_to_panoptic_map caps class at 133 and instance at 100.
  label_map = np.minimum(label_map, [133, 100])
  assert np.mean(np.all(label_map == io['infer_panoptic_mask_res'], -1)) >= 0.995


def test_online_weights_differ_from_ema(panoptic):
  """The fixture's EMA copies differ from the online weights: a loader that
  took the wrong copy would fail the equality tests above."""
  model = panoptic['model']
  kernel = model.encoder.transformer.projection.kernel
  assert not np.allclose(panoptic['online'][kernel.path], kernel.numpy(),
                         atol=1e-3)


def test_imported_model_dir_restores_for_init_and_export(panoptic):
  model, ema = _model_from(panoptic['out'])
  train_lib.restore_init_checkpoint(panoptic['out'], 'model_and_ema', model, ema)
  expected = panoptic['model'].decoder.conv_out.kernel.numpy()
  with ema.swap():
    np.testing.assert_array_equal(model.decoder.conv_out.kernel.numpy(), expected)
  restored, used_ema = export.restore_model(
      export.resolve_checkpoint(panoptic['out']))
  assert used_ema
  np.testing.assert_array_equal(restored.decoder.conv_out.kernel.numpy(), expected)
  # The written config.gin builds the authors' options.
  assert config.gin_value('build_image_encoder.stem_pool_padding') == 'same'
  assert tuple(config.gin_value('build_image_encoder.pixel_std')) == (1.0, 1.0, 1.0)


def test_shape_mismatch_names_both_sides_and_writes_nothing(tmp_path):
  out = str(tmp_path / 'out')
  with pytest.raises(ValueError, match=r'shape mismatch: theirs model/denoiser/'
                     r'transformer/transformer_decoder/dec_layers/0/mlp/'
                     r'mlp_layers/0/dense1/kernel.*\(64, 256\).*-> ours .*mlp_in'):
    import_authors.import_checkpoint(
        os.path.join(PANOPTIC, 'ckpt'), 'pix2seq_d', out,
        gin_bindings=['build_mask_decoder.transformer_mlp_dim = 128'])
  assert not os.path.exists(out)


def test_missing_variable_names_both_sides(tmp_path):
  out = str(tmp_path / 'out')
  with pytest.raises(ValueError, match=r'missing in their checkpoint: model/'
                     r'denoiser/transformer/transformer_decoder/dec_layers/1/.*'
                     r'needed for ours: .*layer_1'):
    import_authors.import_checkpoint(
        os.path.join(PANOPTIC, 'ckpt'), 'pix2seq_d', out,
        gin_bindings=['build_mask_decoder.transformer_layers = 2'])
  assert not os.path.exists(out)


def test_without_config_json_needs_a_gin_file(tmp_path):
  ckpt = tmp_path / 'their_run'
  ckpt.mkdir()
  for name in os.listdir(os.path.join(PANOPTIC, 'ckpt')):
    if name != 'config.json':
      shutil.copy(os.path.join(PANOPTIC, 'ckpt', name), ckpt / name)
  with pytest.raises(ValueError, match='give --gin_file'):
    import_authors.import_checkpoint(str(ckpt), 'pix2seq_d', str(tmp_path / 'o'))
  # With a gin file saying the same as their config.json, the import works.
  authors = authors_config.read_config(os.path.join(PANOPTIC, 'config.json'))
  gin_file = tmp_path / 'theirs.gin'
  gin_file.write_text("include 'model/pix2seq_d.gin'\n"
                      + '\n'.join(authors_config.pix2seq_d_bindings(authors)) + '\n')
  gin.clear_config()
  report = import_authors.import_checkpoint(str(ckpt), 'pix2seq_d',
                                            str(tmp_path / 'o'), [str(gin_file)])
  assert report['config_json'] is None and not report['unfilled']


def test_config_json_we_cannot_build_is_named():
  authors = authors_config.read_config(os.path.join(PANOPTIC, 'config.json'))
  authors['model']['resnet_variant'] = 'c5'
  with pytest.raises(ValueError, match="model.resnet_variant = 'c5'"):
    authors_config.pix2seq_d_bindings(authors, 'x/config.json')
  authors['model']['resnet_variant'] = 'c4'
  authors['decoder']['mhsa_resolutions'] = '16'
  with pytest.raises(ValueError, match='decoder.mhsa_resolutions'):
    authors_config.pix2seq_d_bindings(authors, 'x/config.json')


def test_detection_encoder_equals_authors_and_inits_our_encoder(tmp_path):
  out = str(tmp_path / 'obj365_encoder')
  report = import_authors.import_checkpoint(os.path.join(DETECTION, 'ckpt'),
                                            'detection_encoder', out)
  assert report['unfilled'] and all('fusion' in u for u in report['unfilled'])
  assert any(k.startswith('model/decoder/') for k in report['unused'])
  assert not [k for k in report['unused'] if k.startswith('model/encoder/')]
  # A Pix2Seq-D (tiny decoder) with the encoder.gin written next to the import.
  gin.clear_config()
  config.import_configurables()
  config.parse_gin(['model/pix2seq_d_tiny.gin',
                    os.path.join(out, import_authors.ENCODER_GIN_NAME)], [],
                   finalize=False)
  model = pix2seq_d.build_model()
  ema = pix2seq_d.build_ema(model)
  train_lib.restore_init_checkpoint(out, 'encoder', model, ema)
  io = np.load(os.path.join(DETECTION, 'io.npz'))
  images = tf.constant(io['images'])
  stages = model.encoder.backbone(images, training=False)
  for stage, name in zip(stages, ('c2', 'c3', 'c4')):
    np.testing.assert_allclose(stage.numpy(), io[f'enc_resnet_{name}'],
                               atol=TOLERANCE, rtol=0)
  tokens = model.encode(images)['tokens']
  np.testing.assert_allclose(tokens.numpy(), io['enc_tokens'], atol=TOLERANCE,
                             rtol=0)
  with ema.swap():  # The EMA starts at the imported weights.
    np.testing.assert_allclose(model.encode(images)['tokens'].numpy(),
                               io['enc_tokens'], atol=TOLERANCE, rtol=0)


def test_program_prints_the_mapping(tmp_path):
  out = str(tmp_path / 'obj365_encoder')
  result = subprocess.run(
      [sys.executable, '-m', 'tools.import_authors_checkpoint',
       f'--checkpoint={os.path.join(DETECTION, "ckpt")}',
       '--kind=detection_encoder', f'--output_dir={out}'],
      cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert ('model/encoder/transformer_encoder/enc_layers/11/mha/_query_dense/kernel'
          ' + ') in result.stdout
  assert '# theirs, not used:' in result.stdout
  assert '# ours, not filled:' in result.stdout
  assert tf.train.latest_checkpoint(out)
