"""Records to tensors: the decoder half of decoder -> parser (TF Model Garden style).

The decoders read the schema of `data/records.py` (REFERENCE §7) with tf ops only,
so they run inside `tf.data.Dataset.map`. They do no augmentation and no resizing;
`data/parsers.py` does that.

Image records (`tf.train.Example`) decode in one step with
`decode_panoptic_example`. Video records (`tf.train.SequenceExample`, one per
video or chunk) decode in two: `parse_video_example` reads the record but leaves
the frames encoded, and `decode_video_frames` decodes the frames a parser asks
for, so a clip sampler decodes 3 frames, not the whole video.
`decode_video_example` does both for every frame.
"""

from typing import Dict

import tensorflow as tf

from data import records

_IMAGE_FEATURES = {
    records.IMAGE_ENCODED: tf.io.FixedLenFeature([], tf.string),
    records.IMAGE_FORMAT: tf.io.FixedLenFeature([], tf.string, default_value=''),
    records.IMAGE_HEIGHT: tf.io.FixedLenFeature([], tf.int64),
    records.IMAGE_WIDTH: tf.io.FixedLenFeature([], tf.int64),
    records.IMAGE_SOURCE_ID: tf.io.FixedLenFeature([], tf.string),
    records.IMAGE_FILENAME: tf.io.FixedLenFeature([], tf.string,
                                                  default_value=''),
    records.CATEGORY_MASK: tf.io.FixedLenFeature([], tf.string),
    records.INSTANCE_MASK: tf.io.FixedLenFeature([], tf.string),
    records.SEGMENT_IDS: tf.io.VarLenFeature(tf.int64),
    records.SEGMENT_CLASS_IDS: tf.io.VarLenFeature(tf.int64),
    records.SEGMENT_IS_CROWD: tf.io.VarLenFeature(tf.int64),
}

_VIDEO_CONTEXT_FEATURES = {
    records.VIDEO_ID: tf.io.FixedLenFeature([], tf.string),
    records.VIDEO_FIRST_FRAME_INDEX: tf.io.FixedLenFeature([], tf.int64),
    records.VIDEO_NUM_FRAMES: tf.io.FixedLenFeature([], tf.int64),
    records.IMAGE_HEIGHT: tf.io.FixedLenFeature([], tf.int64),
    records.IMAGE_WIDTH: tf.io.FixedLenFeature([], tf.int64),
    records.IMAGE_FORMAT: tf.io.FixedLenFeature([], tf.string, default_value=''),
}

_VIDEO_SEQUENCE_FEATURES = {
    records.IMAGE_ENCODED: tf.io.FixedLenSequenceFeature([], tf.string),
    records.FRAME_NAME: tf.io.FixedLenSequenceFeature([], tf.string),
    records.CATEGORY_MASK: tf.io.FixedLenSequenceFeature([], tf.string),
    records.INSTANCE_MASK: tf.io.FixedLenSequenceFeature([], tf.string),
}


def decode_image(encoded: tf.Tensor) -> tf.Tensor:
  """JPEG/PNG bytes to uint8 `[H, W, 3]` (grayscale becomes 3 equal channels)."""
  image = tf.io.decode_image(encoded, channels=3, dtype=tf.uint8,
                             expand_animations=False)
  image.set_shape([None, None, 3])
  return image


def decode_category_mask(encoded: tf.Tensor) -> tf.Tensor:
  """uint8 PNG bytes to int32 `[H, W]` contiguous class ids (0 = void)."""
  mask = tf.io.decode_png(encoded, channels=1, dtype=tf.uint8)
  return tf.cast(mask[:, :, 0], tf.int32)


def decode_instance_mask(encoded: tf.Tensor) -> tf.Tensor:
  """uint16 PNG bytes to int32 `[H, W]` segment indices (0 = void)."""
  mask = tf.io.decode_png(encoded, channels=1, dtype=tf.uint16)
  return tf.cast(mask[:, :, 0], tf.int32)


def _check_size(tensor, height, width, name, record_id):
  """Asserts `tensor`'s first two dims are `(height, width)`; errors name the record."""
  shape = tf.shape(tensor)
  return tf.debugging.assert_equal(
      tf.stack([shape[0], shape[1]]), tf.stack([height, width]),
      message=tf.strings.join([
          'record ', record_id, ': ', name,
          ' size differs from image/height, image/width'
      ]))


def decode_panoptic_example(serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
  """Decodes one image record (`records.panoptic_example`).

  Args:
    serialized: scalar string, a serialized `tf.train.Example`.

  Returns:
    A dict:
      `image`: uint8 `[H, W, 3]`.
      `category_mask`: int32 `[H, W]`, contiguous class id, 0 = void.
      `instance_mask`: int32 `[H, W]`, segment index 1..N, 0 = void.
      `segment_ids`: int32 `[N]`, the dataset's id of segment index i + 1.
      `segment_class_ids`: int32 `[N]`, class of segment index i + 1.
      `segment_is_crowd`: int32 `[N]`, 1 where segment index i + 1 is crowd.
      `source_id`: string scalar.
      `filename`: string scalar.
      `height`, `width`: int32 scalars, the original size.

  Raises:
    tf.errors.InvalidArgumentError: (when run) if the image or a mask does not
      have the record's height and width; the message names the source_id.
  """
  parsed = tf.io.parse_single_example(serialized, _IMAGE_FEATURES)
  source_id = parsed[records.IMAGE_SOURCE_ID]
  height = tf.cast(parsed[records.IMAGE_HEIGHT], tf.int32)
  width = tf.cast(parsed[records.IMAGE_WIDTH], tf.int32)
  image = decode_image(parsed[records.IMAGE_ENCODED])
  category_mask = decode_category_mask(parsed[records.CATEGORY_MASK])
  instance_mask = decode_instance_mask(parsed[records.INSTANCE_MASK])
  checks = [
      _check_size(image, height, width, 'image', source_id),
      _check_size(category_mask, height, width, 'category_mask', source_id),
      _check_size(instance_mask, height, width, 'instance_mask', source_id),
  ]
  with tf.control_dependencies(checks):
    image = tf.identity(image)

  def dense(key):
    return tf.cast(tf.sparse.to_dense(parsed[key]), tf.int32)

  return {
      'image': image,
      'category_mask': category_mask,
      'instance_mask': instance_mask,
      'segment_ids': dense(records.SEGMENT_IDS),
      'segment_class_ids': dense(records.SEGMENT_CLASS_IDS),
      'segment_is_crowd': dense(records.SEGMENT_IS_CROWD),
      'source_id': source_id,
      'filename': parsed[records.IMAGE_FILENAME],
      'height': height,
      'width': width,
  }


def parse_video_example(serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
  """Reads one video record (`records.video_sequence_example`), frames still encoded.

  Args:
    serialized: scalar string, a serialized `tf.train.SequenceExample`.

  Returns:
    A dict:
      `encoded_frames`: string `[T]`, the frames as shipped (JPEG/PNG).
      `encoded_category_masks`: string `[T]`, uint8 PNGs.
      `encoded_instance_masks`: string `[T]`, uint16 PNGs.
      `frame_names`: string `[T]`.
      `video_id`: string scalar.
      `first_frame_index`: int32 scalar, index of frame 0 of this record in
        the whole video (records may hold chunks of a long video).
      `num_frames`: int32 scalar, T.
      `height`, `width`: int32 scalars.
  """
  context, sequence = tf.io.parse_single_sequence_example(
      serialized, context_features=_VIDEO_CONTEXT_FEATURES,
      sequence_features=_VIDEO_SEQUENCE_FEATURES)
  return {
      'encoded_frames': sequence[records.IMAGE_ENCODED],
      'encoded_category_masks': sequence[records.CATEGORY_MASK],
      'encoded_instance_masks': sequence[records.INSTANCE_MASK],
      'frame_names': sequence[records.FRAME_NAME],
      'video_id': context[records.VIDEO_ID],
      'first_frame_index': tf.cast(context[records.VIDEO_FIRST_FRAME_INDEX],
                                   tf.int32),
      'num_frames': tf.cast(context[records.VIDEO_NUM_FRAMES], tf.int32),
      'height': tf.cast(context[records.IMAGE_HEIGHT], tf.int32),
      'width': tf.cast(context[records.IMAGE_WIDTH], tf.int32),
  }


def decode_video_frames(video: Dict[str, tf.Tensor], indices: tf.Tensor):
  """Decodes the frames `indices` of a `parse_video_example` dict.

  Args:
    video: the output of `parse_video_example`.
    indices: int32 `[n]`, frame indices in `[0, num_frames)`; `n` must be
      known statically (a clip sampler asks for a fixed number of frames).

  Returns:
    frames: uint8 `[n, H, W, 3]`.
    category_masks: int32 `[n, H, W]`.
    instance_masks: int32 `[n, H, W]`.

  Raises:
    tf.errors.InvalidArgumentError: (when run) if a frame or mask does not
      have the record's height and width; the message names the video.
  """
  num = indices.shape[0]
  if num is None:
    raise ValueError('decode_video_frames needs a static number of indices, '
                     f'got shape {indices.shape}.')
  height, width = video['height'], video['width']
  frames, category_masks, instance_masks, checks = [], [], [], []
  for i in range(num):
    frame = decode_image(tf.gather(video['encoded_frames'], indices[i]))
    category = decode_category_mask(
        tf.gather(video['encoded_category_masks'], indices[i]))
    instance = decode_instance_mask(
        tf.gather(video['encoded_instance_masks'], indices[i]))
    where = tf.strings.join(
        [video['video_id'], '/', tf.gather(video['frame_names'], indices[i])])
    checks += [
        _check_size(frame, height, width, 'frame', where),
        _check_size(category, height, width, 'category_mask', where),
        _check_size(instance, height, width, 'instance_mask', where),
    ]
    frames.append(frame)
    category_masks.append(category)
    instance_masks.append(instance)
  with tf.control_dependencies(checks):
    return (tf.stack(frames), tf.stack(category_masks),
            tf.stack(instance_masks))


def decode_video_example(serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
  """Decodes every frame of one video record.

  Meant for tests, visualisation and short clips; training and streaming
  evaluation decode only the frames they need (`parse_video_example` +
  `decode_video_frames`).

  Args:
    serialized: scalar string, a serialized `tf.train.SequenceExample`.

  Returns:
    A dict:
      `frames`: uint8 `[T, H, W, 3]`.
      `category_masks`: int32 `[T, H, W]`.
      `instance_masks`: int32 `[T, H, W]` (indices consistent across frames).
      `video_id`: string scalar.
      `frame_names`: string `[T]`.
      `first_frame_index`, `num_frames`, `height`, `width`: int32 scalars.
  """
  video = parse_video_example(serialized)
  height, width = video['height'], video['width']

  def decode_frame(encoded):
    frame_bytes, category_bytes, instance_bytes = encoded
    return (decode_image(frame_bytes), decode_category_mask(category_bytes),
            decode_instance_mask(instance_bytes))

  frames, category_masks, instance_masks = tf.map_fn(
      decode_frame,
      (video['encoded_frames'], video['encoded_category_masks'],
       video['encoded_instance_masks']),
      fn_output_signature=(
          tf.TensorSpec([None, None, 3], tf.uint8),
          tf.TensorSpec([None, None], tf.int32),
          tf.TensorSpec([None, None], tf.int32),
      ))
  checks = [
      _check_size(frames[0], height, width, 'frames', video['video_id']),
      _check_size(category_masks[0], height, width, 'category_masks',
                  video['video_id']),
      _check_size(instance_masks[0], height, width, 'instance_masks',
                  video['video_id']),
  ]
  with tf.control_dependencies(checks):
    frames = tf.identity(frames)
  return {
      'frames': frames,
      'category_masks': category_masks,
      'instance_masks': instance_masks,
      'video_id': video['video_id'],
      'frame_names': video['frame_names'],
      'first_frame_index': video['first_frame_index'],
      'num_frames': video['num_frames'],
      'height': height,
      'width': width,
  }


def video_frames_dataset(video: Dict[str, tf.Tensor]) -> tf.data.Dataset:
  """One element per frame of a `parse_video_example` dict, in order, still encoded.

  Streaming evaluation `flat_map`s this over the video records, so only one
  encoded video sits in host memory and frames are decoded one at a time.

  Args:
    video: the output of `parse_video_example`.

  Returns:
    A dataset of dicts: `encoded_frame`, `encoded_category_mask`,
    `encoded_instance_mask`, `frame_name`, `video_id` (string scalars),
    `frame_index` (int32, `first_frame_index + t`: the index in the whole
    video), `height`, `width` (int32).
  """
  num_frames = tf.shape(video['encoded_frames'])[0]
  return tf.data.Dataset.from_tensor_slices({
      'encoded_frame': video['encoded_frames'],
      'encoded_category_mask': video['encoded_category_masks'],
      'encoded_instance_mask': video['encoded_instance_masks'],
      'frame_name': video['frame_names'],
      'video_id': tf.fill([num_frames], video['video_id']),
      'frame_index': video['first_frame_index'] + tf.range(num_frames),
      'height': tf.fill([num_frames], video['height']),
      'width': tf.fill([num_frames], video['width']),
  })


def decode_video_frame(frame: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  """Decodes one element of `video_frames_dataset`.

  Returns:
    A dict: `image` uint8 `[H, W, 3]`, `category_mask` and `instance_mask`
    int32 `[H, W]`.

  Raises:
    tf.errors.InvalidArgumentError: (when run) if the sizes differ from the
      record's; the message names `video_id/frame_name`.
  """
  where = tf.strings.join([frame['video_id'], '/', frame['frame_name']])
  image = decode_image(frame['encoded_frame'])
  category_mask = decode_category_mask(frame['encoded_category_mask'])
  instance_mask = decode_instance_mask(frame['encoded_instance_mask'])
  height, width = frame['height'], frame['width']
  checks = [
      _check_size(image, height, width, 'frame', where),
      _check_size(category_mask, height, width, 'category_mask', where),
      _check_size(instance_mask, height, width, 'instance_mask', where),
  ]
  with tf.control_dependencies(checks):
    image = tf.identity(image)
  return {
      'image': image,
      'category_mask': category_mask,
      'instance_mask': instance_mask,
  }
