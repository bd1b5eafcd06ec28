"""Data: official dataset readers, custom folders and lists, procedural shapes, transforms.

Official readers (same item order, labels, normalisation and sampling as the official
ACT / Point-BERT / Point-MAE code; see each module for what was confirmed and what differs):

* :class:`ShapeNet55` - unlabelled pretraining clouds (``.npy`` + ``train.txt``/``test.txt``)
* :class:`ModelNet40` - ``modelnet40_normal_resampled`` (``.txt``, ``.dat`` pickles with
  ``allow_pickle=True``, or the ``.npz`` written by :func:`convert_modelnet_pickle`)
* :class:`ModelNet40FewShot` - the official ``{way}way_{shot}shot/{fold}.pkl`` splits
* :class:`ScanObjectNN` - ``OBJ_BG``, ``OBJ_ONLY``, ``PB_T50_RS`` h5 files
* :class:`ShapeNetPart` - 16 categories, 50 parts
* :class:`S3DIS` - indoor rooms, 13 classes (``collect_indoor3d_data`` ``.npy``); whole-scene
  blocking for semantic segmentation in :mod:`act_zoo.data.blocks`

Your own data: :func:`read_points` (one reader for .ply .pcd .npy .npz .txt .xyz .csv .off
.obj .stl), :func:`collect_files` (files, directories, globs), :class:`PointCloudFolder`,
:class:`PointCloudList`, :func:`make_few_shot_splits`. The one preparation path for a cloud
(read -> validate -> normalise in float64 -> per-item seeded resampling -> batch), shared by
the custom datasets, ``extract_features``, ``predict`` and ``evaluate``:
:class:`CloudPreparer` / :func:`prepare_cloud` and :func:`batch_clouds` (:mod:`act_zoo.data.prepare`).

Offline data: :class:`SyntheticShapes`, :func:`synthetic_room`. Augmentations: :mod:`act_zoo.data.transforms`.

Every bad file or layout raises :class:`DatasetError` (a ``ValueError``) naming the file.
h5py, trimesh, plyfile and pypcd4 are optional (``pip install "act-zoo[io]"``) and imported only
by the readers that need them.
"""

from .custom import PointCloudFolder, PointCloudList
from .errors import DatasetError
from .fewshot import FewShotSplit, make_few_shot_splits
from .io import MESH_EXTENSIONS, POINT_CLOUD_EXTENSIONS, SUPPORTED_EXTENSIONS, collect_files, read_points
from .modelnet import ModelNet40, ModelNet40FewShot, convert_modelnet_pickle
from .prepare import CloudBatch, CloudPreparer, PreparedCloud, batch_clouds, prepare_cloud
from .s3dis import S3DIS, S3DIS_CLASSES
from .scanobjectnn import SCANOBJECTNN_CLASSES, ScanObjectNN
from .shapenet import ShapeNet55
from .shapenetpart import SHAPENETPART_SEG_CLASSES, ShapeNetPart
from .synthetic import SHAPE_CLASSES, SyntheticShapes
from .synthetic_scene import synthetic_room
from .transforms import (
    Compose,
    FPSResample,
    Jitter,
    NormalizeUnitSphere,
    RandomPointDropout,
    RandomResample,
    RotateY,
    ScaleAndTranslate,
)

__all__ = [
    "MESH_EXTENSIONS",
    "POINT_CLOUD_EXTENSIONS",
    "S3DIS",
    "S3DIS_CLASSES",
    "SCANOBJECTNN_CLASSES",
    "SHAPENETPART_SEG_CLASSES",
    "SHAPE_CLASSES",
    "SUPPORTED_EXTENSIONS",
    "CloudBatch",
    "CloudPreparer",
    "Compose",
    "DatasetError",
    "FPSResample",
    "FewShotSplit",
    "Jitter",
    "ModelNet40",
    "ModelNet40FewShot",
    "NormalizeUnitSphere",
    "PointCloudFolder",
    "PointCloudList",
    "PreparedCloud",
    "RandomPointDropout",
    "RandomResample",
    "RotateY",
    "ScaleAndTranslate",
    "ScanObjectNN",
    "ShapeNet55",
    "ShapeNetPart",
    "SyntheticShapes",
    "batch_clouds",
    "collect_files",
    "convert_modelnet_pickle",
    "make_few_shot_splits",
    "prepare_cloud",
    "read_points",
    "synthetic_room",
]
