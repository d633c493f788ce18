"""torch.library registration shared by the ops."""

import torch


def register_op_pair(forward_name, backward_name, *, fake_forward, fake_backward, autograd_backward, setup_context):
    """Fake kernels for a forward op and its backward op, and autograd for the forward whose
    backward formula (``autograd_backward(backward_op)``) calls the backward op."""
    torch.library.register_fake(forward_name)(fake_forward)
    torch.library.register_fake(backward_name)(fake_backward)
    backward_op = getattr(torch.ops.stylegan_ops, backward_name.split("::")[1])
    torch.library.register_autograd(forward_name, autograd_backward(backward_op), setup_context=setup_context)
