"""Tests of models/encoder.py: ResNet layout and counts, Keras weight loading, encoder outputs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from models import encoder as encoder_lib
from models import layers
from tests.models import recompute_checks


def _tiny_encoder(**overrides):
  kwargs = dict(image_size=(64, 64), mask_size=(32, 32), blocks_per_stage=(1, 1, 1),
                base_width=8, block_type='basic', hidden_dim=32, num_layers=1,
                num_heads=2, mlp_dim=64, fusion_dim=16)
  kwargs.update(overrides)
  return encoder_lib.build_image_encoder(**kwargs)


def test_resnet50_to_res4_layout_and_parameter_count():
  backbone = encoder_lib.ResNet((3, 4, 6), 64, 'bottleneck')
  outputs = backbone(tf.zeros([1, 64, 64, 3]))
  assert [o.shape for o in outputs] == [(1, 16, 16, 256), (1, 8, 8, 512),
                                        (1, 4, 4, 1024)]
  assert backbone.stage_channels == [256, 512, 1024]
  assert layers.count_params(backbone) == 8_543_296  # REFERENCE §4
  named = backbone.named_layers()
  assert len([n for n in named if n.endswith('_conv')]) == 43
  # The last BN of every bottleneck starts at gamma = 0, the others at 1.
  for name, layer in named.items():
    if name.endswith('_3_bn'):
      np.testing.assert_array_equal(layer.gamma.numpy(), 0.0)
    elif name.endswith('_bn'):
      np.testing.assert_array_equal(layer.gamma.numpy(), 1.0)
  # v1.5: the stride sits on the 3x3 conv.
  assert named['conv3_block1_2_conv'].strides == (2, 2)
  assert named['conv3_block1_1_conv'].strides == (1, 1)


def test_basic_block_backbone():
  backbone = encoder_lib.ResNet((1, 2, 1), 8, 'basic')
  outputs = backbone(tf.zeros([2, 32, 32, 3]))
  assert [o.shape for o in outputs] == [(2, 8, 8, 8), (2, 4, 4, 16), (2, 2, 2, 32)]
  assert backbone.stage_channels == [8, 16, 32]
  np.testing.assert_array_equal(
      backbone.named_layers()['conv3_block2_2_bn'].gamma.numpy(), 0.0)


def test_unknown_block_type_names_the_valid_ones():
  with pytest.raises(ValueError, match=r"\['basic', 'bottleneck'\]"):
    encoder_lib.ResNet((1,), 8, 'resnext')


def _randomize_keras_resnet(model, rng):
  for layer in model.layers:
    weights = layer.get_weights()
    if isinstance(layer, keras.layers.BatchNormalization):
      c = weights[0].shape
      layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c),
                         rng.normal(0, 0.1, c), rng.uniform(0.5, 2.0, c)])
    elif isinstance(layer, keras.layers.Conv2D):
      layer.set_weights([weights[0], rng.normal(0, 0.1, weights[1].shape)])


@pytest.fixture(scope='module')
def keras_resnet50_file(tmp_path_factory):
  """A keras.applications.ResNet50 weights file with random BN stats and conv biases."""
  model = keras.applications.ResNet50(weights=None, include_top=False,
                                      input_shape=(64, 64, 3))
  _randomize_keras_resnet(model, np.random.RandomState(0))
  path = str(tmp_path_factory.mktemp('resnet') / 'resnet50.weights.h5')
  model.save_weights(path)
  stages = keras.Model(model.input, [
      model.get_layer(n).output
      for n in ('conv1_bn', 'conv2_block3_out', 'conv3_block4_out',
                'conv4_block6_out')])
  return path, stages


def test_keras_resnet50_weights_load_exactly(keras_resnet50_file):
  path, keras_stages = keras_resnet50_file
  images = np.random.RandomState(1).uniform(size=(2, 64, 64, 3)).astype(np.float32)
  expected = keras_stages(
      keras.applications.resnet50.preprocess_input(images * 255.0))
  # With the caffe normalisation the conversion is exact everywhere.
  mean = [m / 255.0 for m in encoder_lib.CAFFE_MEAN_RGB]
  std = [1.0 / 255.0] * 3
  backbone = encoder_lib.ResNet((3, 4, 6), 64, 'bottleneck', stride_in_1x1=True)
  loaded = encoder_lib.load_keras_resnet50_weights(backbone, path, mean, std)
  assert loaded == 43
  normalized = (images - np.array(mean, np.float32)) / np.array(std, np.float32)
  outputs = backbone(tf.constant(normalized), training=False)
  for ours, theirs in zip(outputs, expected[1:]):
    theirs = theirs.numpy()
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-3,
                               atol=1e-3 * np.abs(theirs).max())


def test_keras_resnet50_weights_with_imagenet_normalisation(keras_resnet50_file):
  path, keras_stages = keras_resnet50_file
  images = np.random.RandomState(2).uniform(size=(1, 64, 64, 3)).astype(np.float32)
  expected = keras_stages(
      keras.applications.resnet50.preprocess_input(images * 255.0))[0].numpy()
  backbone = encoder_lib.ResNet((3, 4, 6), 64, 'bottleneck')  # v1.5 takes them too.
  assert encoder_lib.load_keras_resnet50_weights(backbone, path) == 43
  normalized = ((images - np.array(encoder_lib.IMAGENET_MEAN, np.float32)) /
                np.array(encoder_lib.IMAGENET_STD, np.float32))
  x = encoder_lib._pad(tf.constant(normalized), 7)  # pylint: disable=protected-access
  stem = backbone.stem_bn(backbone.stem_conv(x), training=False).numpy()
  # Exact away from the zero-padded border (the mean offset is folded into BN).
  np.testing.assert_allclose(stem[:, 2:-2, 2:-2], expected[:, 2:-2, 2:-2],
                             rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_weight_loading_rejects_a_basic_backbone(keras_resnet50_file):
  backbone = encoder_lib.ResNet((1, 1, 1), 8, 'basic')
  with pytest.raises(ValueError, match='bottleneck'):
    encoder_lib.load_keras_resnet50_weights(backbone, keras_resnet50_file[0])


def test_weights_file_must_exist(tmp_path):
  backbone = encoder_lib.ResNet((1, 1, 1), 64, 'bottleneck')
  with pytest.raises(FileNotFoundError, match='missing.weights.h5'):
    encoder_lib.load_keras_resnet50_weights(backbone,
                                            str(tmp_path / 'missing.weights.h5'))


def test_encoder_outputs_and_one_set_of_weights_at_two_sizes():
  encoder = _tiny_encoder()
  small = encoder(tf.random.uniform([2, 64, 64, 3]))
  assert small['feature_map'].shape == (2, 32, 32, 16)
  assert small['tokens'].shape == (2, 16, 32)
  num_variables = len(encoder.variables)
  large = encoder(tf.random.uniform([1, 128, 192, 3]))
  assert large['feature_map'].shape == (1, 64, 96, 16)
  assert large['tokens'].shape == (1, 8 * 12, 32)
  assert len(encoder.variables) == num_variables
  # The fusion ends post-SiLU: silu(x) >= -0.2785.
  assert small['feature_map'].numpy().min() >= -0.2785


def test_encoder_normalises_images_itself():
  encoder = _tiny_encoder()
  plain = _tiny_encoder(pixel_mean=(0.0, 0.0, 0.0), pixel_std=(1.0, 1.0, 1.0))
  images = tf.random.uniform([1, 64, 64, 3])
  encoder(images)
  plain(images)
  for target, source in zip(plain.variables, encoder.variables):
    target.assign(source)
  mean = tf.constant(encoder_lib.IMAGENET_MEAN)
  std = tf.constant(encoder_lib.IMAGENET_STD)
  np.testing.assert_allclose(encoder(images)['tokens'].numpy(),
                             plain((images - mean) / std)['tokens'].numpy(),
                             rtol=1e-4, atol=1e-4)


def test_mask_stride_from_sizes():
  assert encoder_lib.mask_stride_from_sizes((256, 256), (128, 128)) == 2
  assert encoder_lib.mask_stride_from_sizes((1024, 2048), (512, 1024)) == 2
  assert encoder_lib.mask_stride_from_sizes((64, 64), (64, 64)) == 1
  with pytest.raises(ValueError, match='1, 2 or 4'):
    encoder_lib.mask_stride_from_sizes((256, 256), (32, 32))
  with pytest.raises(ValueError, match='1, 2 or 4'):
    encoder_lib.mask_stride_from_sizes((256, 256), (128, 64))


def test_encoder_rejects_sizes_off_the_backbone_stride():
  with pytest.raises(ValueError, match='multiple of the backbone output stride 16'):
    _tiny_encoder()(tf.zeros([1, 40, 64, 3]))




def test_stem_pool_padding_same_is_tf_same_and_shifts_the_windows():
  """'same' (the authors' MaxPooling2D padding='SAME') pads bottom/right only."""
  x = tf.random.uniform([1, 64, 64, 3], seed=3)
  same = encoder_lib.ResNet((1,), 8, 'basic', stem_pool_padding='same')
  symmetric = encoder_lib.ResNet((1,), 8, 'basic')
  same(x)
  symmetric(x)
  for a, b in zip(same.weights, symmetric.weights):
    b.assign(a)
  stem = tf.nn.relu(same.stem_bn(same.stem_conv(encoder_lib._pad(x, 7))))
  expected = np.asarray(stem)
  # SAME for a 3x3/s2 pool of an even size: windows start at 0, 2, ...
  padded = np.pad(expected, [(0, 0), (0, 1), (0, 1), (0, 0)])
  manual = np.max([padded[:, i:i + 16 * 2:2, j:j + 16 * 2:2]
                   for i in range(3) for j in range(3)], axis=0)
  np.testing.assert_allclose(same.stem(x).numpy(), manual, atol=1e-6)
  # Symmetric padding: windows start at -1, 1, ...
  padded = np.pad(expected, [(0, 0), (1, 1), (1, 1), (0, 0)])
  manual = np.max([padded[:, i:i + 16 * 2:2, j:j + 16 * 2:2]
                   for i in range(3) for j in range(3)], axis=0)
  np.testing.assert_allclose(symmetric.stem(x).numpy(), manual, atol=1e-6)
  assert not np.allclose(same(x)[0].numpy(), symmetric(x)[0].numpy(), atol=1e-3)
  with pytest.raises(ValueError, match="stem_pool_padding='valid'"):
    encoder_lib.ResNet((1,), 8, 'basic', stem_pool_padding='valid')


def test_sync_batch_norm_reaches_every_batch_norm():
  encoder = _tiny_encoder(sync_batch_norm=True)
  encoder(tf.zeros([1, 64, 64, 3]))
  norms = [l for l in encoder.backbone.named_layers().values()
           if isinstance(l, keras.layers.BatchNormalization)]
  assert norms and all(l.synchronized for l in norms)
  default = _tiny_encoder()
  default(tf.zeros([1, 64, 64, 3]))
  assert not any(l.synchronized for l in default.backbone.named_layers().values()
                 if isinstance(l, keras.layers.BatchNormalization))


def test_recomputed_blocks_give_the_same_gradients_and_batch_statistics():
  images = tf.random.stateless_uniform([2, 64, 64, 3], seed=[3, 4])
  encoders = {}
  for remat in (False, True):
    encoder = _tiny_encoder(num_layers=2, recompute_blocks=remat)
    encoder(images)
    encoders[remat] = encoder
  rng = np.random.RandomState(0)
  for a, b in zip(encoders[False].weights, encoders[True].weights):
    value = a.numpy()
    if a.trainable and np.abs(value).max() < 1e-3:  # Zero BN gammas: perturb.
      value = rng.normal(0, 0.1, value.shape).astype(np.float32)
      a.assign(value)
    b.assign(value)

  @tf.function
  def grads(encoder):
    with tf.GradientTape() as tape:
      out = encoder(images, training=True)
      loss = (tf.reduce_sum(tf.square(out['feature_map'])) +
              tf.reduce_sum(tf.square(out['tokens'])))
    return loss, tape.gradient(loss, encoder.trainable_variables)

  recompute_checks.assert_same_loss_and_gradients(
      grads(encoders[False]), grads(encoders[True]), rtol=1e-5)
  # The BatchNorm statistics moved once in both (the ResNet is not recomputed).
  for a, b in zip(encoders[False].non_trainable_weights,
                  encoders[True].non_trainable_weights):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)
  # The backward pass really recomputes: attention einsums and fusion convs.
  graph_a = grads.get_concrete_function(encoders[False]).graph
  graph_b = grads.get_concrete_function(encoders[True]).graph
  assert recompute_checks.op_count(graph_b, 'Einsum') > recompute_checks.op_count(graph_a, 'Einsum')
  assert recompute_checks.op_count(graph_b, 'Conv2D') > recompute_checks.op_count(graph_a, 'Conv2D')
  with pytest.raises(ValueError, match='recompute_blocks needs dropout_rate'):
    _tiny_encoder(recompute_blocks=True, drop_path_rate=0.1)
