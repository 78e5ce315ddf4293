"""PyTorch (CPU) on the shapes of bench_mlp, for bench/compare.sh.

Usage: python3 torch_bench.py THREADS. Set OPENBLAS_NUM_THREADS to the same
number: Debian's PyTorch runs its matmuls through OpenBLAS, which ignores
torch.set_num_threads. Prints the same "name value unit" lines as bench_mlp;
each figure is the best of several timed rounds.
"""
import sys
import time

import torch

ROUNDS = 7
ROUND_SECONDS = 0.15


def best_seconds(fn):
    calls = 1
    start = time.perf_counter()
    while time.perf_counter() - start < ROUND_SECONDS / 4:
        for _ in range(calls):
            fn()
        calls *= 2
    best = float("inf")
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


def main():
    torch.set_num_threads(int(sys.argv[1]))
    torch.manual_seed(1)

    tiny = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    x, t = torch.tensor([[0.25, -0.5]]), torch.tensor([[1.0]])
    loss_fn = torch.nn.BCEWithLogitsLoss()
    opt = torch.optim.SGD(tiny.parameters(), lr=0.01)

    def tiny_step():
        opt.zero_grad()
        loss_fn(tiny(x), t).backward()
        opt.step()

    with torch.no_grad():
        print("tiny_2_8_1_forward_ns %.1f ns" % (1e9 * best_seconds(lambda: torch.sigmoid(tiny(x)))))
    print("tiny_2_8_1_train_step_ns %.1f ns" % (1e9 * best_seconds(tiny_step)))

    net = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                              torch.nn.Linear(256, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    ce = torch.nn.CrossEntropyLoss()
    xb = torch.rand(256, 784)
    labels = torch.arange(256) % 10
    for name, optim in (("sgd", torch.optim.SGD(net.parameters(), lr=0.01)),
                        ("adam", torch.optim.Adam(net.parameters(), lr=0.001))):
        def step():
            optim.zero_grad()
            ce(net(xb[:64]), labels[:64]).backward()
            optim.step()
        print("mlp_784_256_128_10_train_%s_b64 %.0f samples/s" % (name, 64 / best_seconds(step)))
    with torch.no_grad():
        for batch in (1, 256):
            xs = xb[:batch]
            rate = batch / best_seconds(lambda: torch.softmax(net(xs), dim=1))
            print("mlp_784_256_128_10_predict_b%d %.0f samples/s" % (batch, rate))


main()
