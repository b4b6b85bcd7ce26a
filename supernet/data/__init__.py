"""Datasets: ADE20K / COCO-Stuff readers, the synthetic set, and side-by-side pictures."""
