"""Weight-sharing training of the supernet: the sandwich loop, losses, several processes, checkpoints."""
