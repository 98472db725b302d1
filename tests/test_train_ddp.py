"""DistributedDataParallel on 2 CPU processes (gloo): both ranks end with the same weights, pruned
weights stay zero, the run learns."""
import os
import socket

import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist

    from yopo.core.masks import assert_pruned_zero  # noqa: F401
    from yopo.experiment.train import TrainConfig, run
    from yopo.experiment.train.loop import Hook

    class Keep(Hook):
        def on_train_end(self, state, result):
            from yopo.core.masks import get_masks  # masks are not in the state dict: saved beside it
            state_dict = {k: v.clone() for k, v in state.model.state_dict().items()}
            state_dict.update({n[: -len("weight")] + "weight_mask": m for n, m in get_masks(state.model).items()})
            torch.save(state_dict, f"{out}/rank{rank}.pt")

    try:
        res = run(TrainConfig(epochs=3, batch_size=64, device="cpu", model="mlp_digits"), method="magnitude",
                  sparsity=0.8, out_dir=f"{out}/run", progress=False, hooks=[Keep()])
        torch.save({"test_acc": res["test_acc"], "sparsity": res["sparsity"]}, f"{out}/res{rank}.pt")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_ddp_two_cpu_processes(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    s0, s1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert s0.keys() == s1.keys()
    for k in s0:
        if k.endswith("num_batches_tracked"):
            continue
        assert torch.equal(s0[k], s1[k]), k
    masks = {k[: -len("_mask")]: v for k, v in s0.items() if k.endswith("weight_mask")}
    assert masks
    for name, m in masks.items():
        assert (s0[name][~m] == 0).all()
    r0 = torch.load(tmp_path / "res0.pt")
    assert r0["test_acc"] > 50 and abs(r0["sparsity"] - 0.8) < 1e-3
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
