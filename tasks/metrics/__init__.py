"""Evaluation metrics computed with numpy on the host (REFERENCE §8).

- `panoptic_quality`: PQ / SQ / RQ (COCO panopticapi semantics), streaming.
- `mean_iou`: confusion-matrix mean IoU of the semantic channel, streaming.
- `separation`: shares of ground-truth thing segments merged / split.
- `davis`: DAVIS 2017 unsupervised J&F (davis2017-evaluation semantics).
- `stq`: Segmentation and Tracking Quality for KITTI-STEP (deeplab2 semantics).
- `files`: reading PNG/JSON inputs and writing results through `tf.io.gfile`.
"""
