"""Forward time of the MindSpore Llama (PyNative and jit) against HF transformers'
LlamaForCausalLM in torch, same weights, on CPU.

    .venv/bin/python bench/model_forward.py [--hidden 256 --layers 4 --heads 8
        --vocab 32000 --seq 512 --batch 4 --repeats 5]

Prints median seconds per forward (logits only) and the largest logit difference."""

import argparse
import statistics
import time

import mindspore as ms
import numpy as np
import torch
import transformers
from mindsft.convert.names import hf_to_ms
from mindsft.models.config import LlamaConfig, mindformers_ffn_size
from mindsft.models.llama import LlamaForCausalLM


def median_time(fn, repeats):
    fn()  # warm-up (and compilation for jit)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in [
        ("hidden", 256),
        ("layers", 4),
        ("heads", 8),
        ("kv_heads", 0),
        ("vocab", 32000),
        ("seq", 512),
        ("batch", 4),
        ("repeats", 5),
    ]:
        p.add_argument(f"--{name}", type=int, default=default)
    args = p.parse_args()
    config = LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        num_layers=args.layers,
        num_heads=args.heads,
        n_kv_heads=args.kv_heads or args.heads,
        intermediate_size=mindformers_ffn_size(args.hidden),
        seq_length=args.seq,
    )
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**config.to_hf_dict())).eval()
    model = LlamaForCausalLM(config)
    params = {hf_to_ms(k): v.numpy() for k, v in hf.state_dict().items() if hf_to_ms(k)}
    ms.load_param_into_net(
        model, {n: ms.Parameter(ms.Tensor(a), name=n) for n, a in params.items()}
    )
    model.set_train(False)
    ids = np.random.default_rng(0).integers(0, args.vocab, (args.batch, args.seq)).astype(np.int32)
    ms_ids, pt_ids = ms.Tensor(ids), torch.tensor(ids, dtype=torch.long)
    jitted = ms.jit(model.construct)

    def torch_forward():
        with torch.no_grad():
            return hf(pt_ids).logits

    results = {
        "mindspore_pynative": median_time(lambda: model(ms_ids).asnumpy(), args.repeats),
        "mindspore_jit": median_time(lambda: jitted(ms_ids).asnumpy(), args.repeats),
        "torch_hf": median_time(lambda: torch_forward().numpy(), args.repeats),
    }
    diff = np.abs(jitted(ms_ids).asnumpy() - torch_forward().numpy()).max()
    print(
        f"shape {vars(args)}, intermediate {config.intermediate_size}, torch threads "
        f"{torch.get_num_threads()}"
    )
    for name, seconds in results.items():
        print(f"{name:20s} {seconds * 1000:9.1f} ms/forward")
    print(f"max |logit difference| {diff:.2e}")


if __name__ == "__main__":
    main()
