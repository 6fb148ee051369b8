"""ImageNet: the ImageFolder layout (:mod:`.layout`), the validation folder's
preparation (:mod:`.prepare`, ``python -m benchmarks.imagenet prepare-val``), the
augmentation as host-drawn decisions (:mod:`.transforms`) and the two data paths
that apply them (:mod:`.data`). docs/imagenet.md says how to lay out the data."""
