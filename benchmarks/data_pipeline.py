"""Data pipeline speed: each stage on the shared reference datasets, beside its peer.

    python benchmarks/data_pipeline.py [--repeats 3] [--batch-size 32] [--cut-off 5.0]

Peers, on the same structures and the same machine:

* graphs: vesin called directly in a plain loop (the neighbour-list floor);
* epoch: torch-geometric's ``DataLoader`` collating ``Data`` objects on the fly,
  computing each item's neighbour list in ``__getitem__`` (here with vesin, the
  fastest choice; the reference physicsml does this without pre-batching).

Each epoch loop reads every batch's coordinates and edges so no lazy memory
map goes untouched. Times are the best of ``--repeats`` runs, on one thread.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DATASETS = {
    "qm9 10k": (SHARED / "qm9_qm9pack_subset10k.extxyz", {"U0": "U0_eV"}, ["U0"], None),
    "rMD17 ethanol 1k": (
        SHARED / "rmd17_ethanol_botnet_train.xyz",
        {"energy": "energy", "forces": "forces"},
        ["energy"],
        "forces",
    ),
}


def best_of(repeats: int, function):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def touch(batch) -> float:
    return float(batch.coordinates.sum()) + float(batch.edge_index.sum())


def measure(name: str, path: Path, targets: dict, y_scalars: list, y_vector: str | None, args) -> list[tuple]:
    import vesin
    from torch_geometric.data import Data
    from torch_geometric.loader import DataLoader as GeometricLoader

    from physicsml.configs import DataConfig, DataModuleConfig, FeaturiseConfig
    from physicsml.data.collate import collate, split_arrays
    from physicsml.data.datasets import OnDiskBatches, make_dataloader
    from physicsml.featurise import featurise, write_featurised
    from physicsml.graphs import build_graphs
    from physicsml.io.arrow import to_numpy
    from physicsml.prebatch import write_prebatched

    data = DataConfig(source=str(path), targets=targets)
    config = FeaturiseConfig(split={"fractions": [1.0, 0.0, 0.0]})
    datamodule = DataModuleConfig(
        cut_off=args.cut_off, train={"batch_size": args.batch_size}, y_graph_scalars=y_scalars, y_node_vector=y_vector
    )
    tmp = Path(tempfile.mkdtemp())

    t_featurise, tables = best_of(args.repeats, lambda: featurise(data, config))
    write_featurised(tables, tmp / "featurised")
    table = tables["train"]
    n = table.num_rows
    t_graphs, graphs = best_of(args.repeats, lambda: build_graphs(table, args.cut_off))

    coordinates, offsets = to_numpy(table["coordinates"])
    structures = [np.ascontiguousarray(coordinates[offsets[i] : offsets[i + 1]]) for i in range(n)]
    calculator = vesin.NeighborList(cutoff=args.cut_off, full_list=True, sorted=True, n_threads=1)
    box = np.zeros((3, 3))

    def vesin_alone():
        return [calculator.compute(x, box, False, "ijS") for x in structures]

    t_vesin, _ = best_of(args.repeats, vesin_alone)

    def prebatch():
        collated = collate(split_arrays(table, graphs, datamodule), args.batch_size)
        write_prebatched(collated, tmp / "train.arrow", {"num_elements": 10})
        return collated

    t_prebatch, collated = best_of(args.repeats, prebatch)
    batches = OnDiskBatches(tmp / "train.arrow")

    def epoch_ours():
        return sum(touch(b) for b in make_dataloader(batches, shuffle=True))

    t_epoch, _ = best_of(args.repeats, epoch_ours)

    species, _ = to_numpy(table["species"])
    energies = to_numpy(table[y_scalars[0]])[0]

    class OnTheFly(torch.utils.data.Dataset):
        def __len__(self):
            return n

        def __getitem__(self, i):
            x = structures[i]
            j_, i_, shifts = calculator.compute(x, box, False, "ijS")
            edge_index = torch.from_numpy(np.stack([i_, j_]).astype(np.int64))
            z = torch.from_numpy(species[offsets[i] : offsets[i + 1]].astype(np.int64))
            return Data(
                coordinates=torch.from_numpy(x.astype(np.float32)),
                edge_index=edge_index,
                cell_shift_vector=torch.from_numpy(shifts.astype(np.float32)),
                raw_atomic_numbers=z,
                atomic_numbers=torch.nn.functional.one_hot(z, 10).float(),
                y_graph_scalars=torch.tensor([[energies[i]]], dtype=torch.float32),
                num_nodes=len(x),
            )

    loader = GeometricLoader(OnTheFly(), batch_size=args.batch_size, shuffle=True)
    t_geometric, _ = best_of(args.repeats, lambda: sum(touch(b) for b in loader))

    return [
        (name, "featurise (read, split, self-energies)", t_featurise, "", None),
        (name, "graphs", t_graphs, "vesin alone", t_vesin),
        (name, "prebatch (collate + write)", t_prebatch, "", None),
        (
            name,
            f"epoch over pre-batched data ({collated.num_batches} batches)",
            t_epoch,
            "PyG DataLoader + NL per item",
            t_geometric,
        ),
    ], n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cut-off", type=float, default=5.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name, (path, targets, y_scalars, y_vector) in DATASETS.items():
        measured, n = measure(name, path, targets, y_scalars, y_vector, args)
        rows.extend((*row, n) for row in measured)
    print(f"\ncut-off {args.cut_off} Å, batch size {args.batch_size}, best of {args.repeats}, 1 thread\n")
    print("| dataset | step | physicsml (s) | structures/s | peer | peer (s) | ours vs peer |")
    print("|---|---|---:|---:|---|---:|---|")
    for name, step, ours, peer, theirs, n in rows:
        ratio = (
            ""
            if theirs is None
            else (f"{ours / theirs:.2f}x the time" if ours >= theirs else f"{theirs / ours:.1f}x faster")
        )
        print(
            f"| {name} | {step} | {ours:.4f} | {n / ours:,.0f} | {peer} | {'' if theirs is None else f'{theirs:.4f}'} | {ratio} |"
        )


if __name__ == "__main__":
    main()
