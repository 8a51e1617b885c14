// Operator schemas of the fusedlr library. Kernels are registered per backend
// (csrc/cpu, csrc/cuda); fake kernels for torch.compile live in fusedlr/ops.py.
// The mutation annotations follow aten::_fused_adam_.
#include <torch/library.h>

TORCH_LIBRARY(fusedlr, m) {
  // out[g] = (lr, momentum) of group g at the schedule counter (see schedule.h, eval_group).
  m.def(
      "eval_schedule_(Tensor program, Tensor hparams, Tensor lr_scale, Tensor counter, "
      "Tensor(a!) out) -> ()");
  // SGD update of every tensor of one (device, dtype) bucket. meta[i] = (group, buffer slot).
  // grad_scale (one element): grads are divided by |grad_scale|; a positive one (a grad
  // scaler's) also writes the divided grads back, a negative one (max_grad_norm's 1 / clip
  // coefficient) does not. found_inf != 0: nothing is written.
  m.def(
      "sgd_update_(Tensor(a!)[] params, Tensor(b!)[] grads, Tensor(c!)[] momentum_buffers, "
      "Tensor(d!)[] steps, Tensor meta, Tensor hparams, Tensor group_lr, Tensor? grad_scale, "
      "Tensor? found_inf) -> ()");
  // Adam / AdamW update. meta[i] = (group, max_exp_avg_sq slot).
  m.def(
      "adam_update_(Tensor(a!)[] params, Tensor(b!)[] grads, Tensor(c!)[] exp_avgs, "
      "Tensor(d!)[] exp_avg_sqs, Tensor(e!)[] max_exp_avg_sqs, Tensor(f!)[] steps, Tensor meta, "
      "Tensor hparams, Tensor group_lr, Tensor? grad_scale, Tensor? found_inf) -> ()");
  // master_weights in one pass (CPU and CUDA): masters (float32) stepped with the grads of the
  // 16-bit params, which receive the rounded masters; otherwise as sgd_update_ / adam_update_
  // (grads are not written back).
  m.def(
      "sgd_update_master_(Tensor(a!)[] masters, Tensor[] grads, Tensor(c!)[] momentum_buffers, "
      "Tensor(d!)[] steps, Tensor(e!)[] params, Tensor meta, Tensor hparams, Tensor group_lr, "
      "Tensor? grad_scale, Tensor? found_inf) -> ()");
  m.def(
      "adam_update_master_(Tensor(a!)[] masters, Tensor[] grads, Tensor(c!)[] exp_avgs, "
      "Tensor(d!)[] exp_avg_sqs, Tensor(e!)[] max_exp_avg_sqs, Tensor(f!)[] steps, "
      "Tensor(g!)[] params, Tensor meta, Tensor hparams, Tensor group_lr, Tensor? grad_scale, "
      "Tensor? found_inf) -> ()");
  // Schedule-free SGD / AdamW (schedule_free.h). update_: one step of one device: checks every
  // argument, advances each group's state row [k, lr_max, weight_sum, lr, c, bc2, -, -] (as
  // prepare_ alone does), then updates y, z (and AdamW's exp_avg_sqs; empty for SGD);
  // groups[i] = the group of tensor i (CPU int64). swap_: train() (y from x) or eval() (x from
  // y) through z.
  m.def("schedule_free_prepare_(Tensor program, Tensor hparams, Tensor(a!) state) -> ()");
  m.def(
      "schedule_free_update_(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] zs, "
      "Tensor(c!)[] exp_avg_sqs, Tensor groups, Tensor program, Tensor hparams, "
      "Tensor(d!) state) -> ()");
  m.def(
      "schedule_free_swap_(Tensor(a!)[] params, Tensor[] zs, Tensor groups, Tensor hparams, "
      "bool to_train) -> ()");
  // out[i] = ||grads[i]||_ord (float64 [len(grads)]): the norm pass of max_grad_norm (CPU).
  m.def("grad_norms_(Tensor[] grads, float ord, Tensor(a!) out) -> ()");
  // Host evaluation of a program: rows (lr, momentum) for t = start .. start + n - 1.
  m.def("schedule_values(Tensor program, int root, float base_lr, int start, int n) -> Tensor");
}
