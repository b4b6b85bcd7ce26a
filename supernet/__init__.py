"""The Efficient-TopFormer search space and its weight-sharing supernet."""
