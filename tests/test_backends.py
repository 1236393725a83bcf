"""Inference backends (`backend="auto" | "fp32" | "bf16" | "int8"`): every fast backend gives fp32's answers within
its rounding on every kind of tweet, "auto" picks a valid one by the documented rule, fp32 is exactly the model,
derived models share the model's tensors, are made once under concurrency and remade after any change, and an export
runs its backend without the package. Nothing here is timed."""

import copy
import json
import textwrap
import threading
import sys
import time
import warnings

import pytest
import torch
from transformers import pipeline

from conftest import run_without_package
from modeling_m2sa import M2SAForSequenceClassification, M2SAProcessor, predict
from modeling_m2sa import backends_m2sa
from modeling_m2sa.backends_m2sa import (
    BFloat16Linear,
    FbgemmInt8Linear,
    Int8Linear,
    auto_backend,
    cpu_has_native_bf16,
    fbgemm_available,
    model_for_backend,
    resolve_backend,
)
from modeling_m2sa.export import main as export_main

# int8 rounds weights (per output feature) and activations (per token) to 1/127 of their range, bf16 keeps 8 bits of
# mantissa. The tiny untrained model's probabilities sit near 1/3 and move by well under PROBABILITY_TOLERANCE, however
# the arithmetic goes, so on that model it checks what each tweet's result holds, not the arithmetic. The arithmetic is
# checked on `spread_model_and_processor`, whose answers are spread as a trained model's: each kernel moves its logits
# by at most LOGIT_TOLERANCE of their spread over the batch. Measured on 24 random draws of that model (its tiny towers
# are drawn anew in each test session): at most 0.0063 (bf16), 0.029 (int8, int_mm), 0.033 (int8, fbgemm); the
# logits of a batch spread over 3.3 to 9.0.
PROBABILITY_TOLERANCE = 0.02
LOGIT_TOLERANCE = 0.08
FAST_BACKENDS = ("bf16", "int8")

TEXTS = ["Qué día tan bonito en la playa, me encanta!", "ok", "Das ist schrecklich und langweilig, wirklich",
         "kurz", "I love this so much, best day ever! @user http://t.co/abc #happy"]


def batches(image_files):
    red, noise, corrupt = image_files["red"], image_files["noise"], image_files["corrupt"]
    return {
        "text_only": (TEXTS, [None] * len(TEXTS), "raise"),
        "image_only": ([""] * 3, [red, noise, red], "raise"),
        "mixed": (TEXTS, [None, red, noise, None, red], "raise"),
        "invalid_images": (TEXTS[:4], [corrupt, red, None, corrupt], "text_only"),
    }


def assert_agrees(fast_results, fp32_results):
    assert len(fast_results) == len(fp32_results)
    for fast, exact in zip(fast_results, fp32_results):
        assert fast["image_used"] == exact["image_used"] and fast["image_error"] == exact["image_error"]
        for label, probability in exact["probabilities"].items():
            assert fast["probabilities"][label] == pytest.approx(probability, abs=PROBABILITY_TOLERANCE)
        ranked = sorted(exact["probabilities"].values(), reverse=True)
        if ranked[0] - ranked[1] > 2 * PROBABILITY_TOLERANCE:  # closer calls may flip within the tolerance
            assert fast["label"] == exact["label"]


def saved_backends_of(pipe):
    """The `backends_m2sa` module of the saved code a pipeline loaded with trust_remote_code runs."""
    return sys.modules[type(pipe).__module__.rsplit(".", 1)[0] + ".backends_m2sa"]


def quietly(function, *args, **kwargs):
    """`function(*args, **kwargs)` without the warning that bf16 is slow on a CPU without native bf16."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*no native bfloat16")
        return function(*args, **kwargs)


KERNELS = {"bf16": "bf16", "int8 (int_mm)": "int_mm", "int8 (fbgemm)": "fbgemm"}


@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("case", ["text_only", "image_only", "mixed", "invalid_images"])
def test_fast_backends_agree_with_fp32(tiny_model_and_processor, spread_model_and_processor, image_files, case, kernel,
                                      monkeypatch):
    """Every kernel a backend can run, whichever this CPU would pick for backend="int8"."""
    model, processor = tiny_model_and_processor
    backend = kernel.split()[0]
    monkeypatch.setattr(backends_m2sa, "int8_kernel", lambda: KERNELS[kernel])
    texts, images, policy = batches(image_files)[case]
    fp32 = predict(model, processor, texts, images, batch_size=2, on_invalid_image=policy, backend="fp32")
    fast = quietly(predict, model, processor, texts, images, batch_size=2, on_invalid_image=policy, backend=backend)
    assert_agrees(fast, fp32)
    assert fast != fp32  # the fast backend really ran
    assert isinstance(next(module for name, module in quietly(model_for_backend, model, backend).named_modules()
                           if name.endswith("classifier")), backends_m2sa.LINEAR_KERNELS[KERNELS[kernel]])
    # The arithmetic, on logits several units apart: a wrong product or scale moves them by tenths of their spread.
    spread, spread_processor = spread_model_and_processor
    with warnings.catch_warnings():  # the invalid_images case's unusable images are said once, by predict above
        warnings.filterwarnings("ignore", message="Some images could not be used")
        inputs = spread_processor(text=texts, images=images, on_invalid_image=policy)
    with torch.inference_mode():
        exact = spread(**inputs).logits
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=backend == "bf16"):
            fast_logits = quietly(model_for_backend, spread, backend)(**inputs).logits.float()
    assert exact.max() - exact.min() > 2
    assert (fast_logits - exact).abs().max() <= LOGIT_TOLERANCE * (exact.max() - exact.min())


def test_fbgemm_layer_scales_each_token_on_its_own():
    """One outlier token must not coarsen the others (fbgemm alone quantizes a batch with one scale)."""
    if not fbgemm_available():
        pytest.skip("this torch has no fbgemm dynamic quantized linear")
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32)
    tokens = torch.randn(8, 64)
    tokens[0] *= 1000  # an outlier token, as trained towers have
    with torch.inference_mode():
        exact, fast = linear(tokens), FbgemmInt8Linear(linear)(tokens)
        per_batch = torch.ops.quantized.linear_dynamic(tokens, FbgemmInt8Linear(linear).packed_weight, True)
    ordinary = slice(1, None)
    error = (fast[ordinary] - exact[ordinary]).abs().max() / exact[ordinary].abs().max()
    per_batch_error = (per_batch[ordinary] + linear.bias - exact[ordinary]).abs().max() / exact[ordinary].abs().max()
    assert error < 0.03  # 7-bit activations, 8-bit weights: about 1 % of the range
    assert per_batch_error > 10 * error  # what the per-token scale buys
    assert torch.allclose(fast[0], exact[0], rtol=0.03, atol=0.03 * exact[0].abs().max().item())


@pytest.mark.parametrize("case", ["text_only", "image_only", "mixed", "invalid_images"])
def test_auto_is_the_default_and_runs_what_it_resolves_to(tiny_model_and_processor, image_files, case):
    model, processor = tiny_model_and_processor
    texts, images, policy = batches(image_files)[case]
    chosen = resolve_backend("auto", "cpu", model)  # the rule, then the probe on this model
    default = predict(model, processor, texts, images, batch_size=2, on_invalid_image=policy)
    assert default == predict(model, processor, texts, images, batch_size=2, on_invalid_image=policy, backend="auto")
    assert default == predict(model, processor, texts, images, batch_size=2, on_invalid_image=policy,
                              backend=chosen)
    assert_agrees(default, predict(model, processor, texts, images, batch_size=2, on_invalid_image=policy,
                                   backend="fp32"))


def with_record(model, **agreement):
    """A copy of `model` whose config holds an agreement record with these shares (of 500 validation tweets)."""
    model = copy.deepcopy(model)
    model.config.backend_agreement = {"split": "validation", "tweets": 500, "agreement": agreement}
    return model


ALL_AGREE = {"bf16": 0.998, "int8": 0.995, "int8_7bit": 0.992}
INT8_FLIPS = {"bf16": 0.998, "int8": 0.982, "int8_7bit": 0.975}  # the record of the MiniLM model on Zen 4


def test_auto_follows_the_rule_on_this_machine(tiny_model_and_processor):
    model, _ = tiny_model_and_processor
    # no agreement record: bf16 where this CPU computes it natively, else fp32
    backend, reason = auto_backend("cpu")
    assert backend == ("bf16" if cpu_has_native_bf16() else "fp32")
    served, reason = auto_backend("cpu", model)
    assert served in (backend, "fp32") and ("probe" in reason or served == backend == "fp32")
    assert auto_backend("cuda", model) == ("fp32", "auto on cuda: fp32 (no agreement record)")
    # on a GPU the record decides bf16
    assert auto_backend("cuda", with_record(model, **ALL_AGREE))[0] == "bf16"
    assert auto_backend("cuda", with_record(model, bf16=0.985, int8=0.99, int8_7bit=0.99)) == (
        "fp32", "auto on cuda: fp32 (98.5% of 500 validation tweets keep fp32's label (its record, below 99 %))")


def isa_of(amx=False, avx512_bf16=False, avx512_vnni=False, avx512=False, avx2=False):
    return {"amx": amx, "avx512_bf16": avx512_bf16, "avx512_vnni": avx512_vnni, "avx512": avx512, "avx2": avx2}


CPU_KINDS = {  # the kinds benchmarks/bench_backends.py measured (docs, Performance), and the unmeasured ones
    "Xeon with AMX": (isa_of(True, True, True, True, True), ["bf16", "int_mm"], "int_mm"),
    "AMD EPYC Zen 4 (AVX512-BF16, VNNI)": (isa_of(False, True, True, True, True), ["bf16", "int_mm"], "int_mm"),
    "Xeon with AVX512-VNNI": (isa_of(False, False, True, True, True), ["int_mm"], "int_mm"),
    "AVX512 without VNNI": (isa_of(False, False, False, True, True), ["fbgemm"], "fbgemm"),
    "AVX2 only (AMD EPYC Zen 3)": (isa_of(avx2=True), ["fbgemm"], "fbgemm"),
    "no AVX2": (isa_of(), [], "int_mm"),
}
"""kind -> (its features, the kernels "auto" may serve there, the kernel backend="int8" runs)"""
PROBE_SPEEDUPS = {"bf16": 2.0, "int_mm": 2.5, "fbgemm": 1.3}
"""A faked probe: each kernel's speed-up over fp32."""


def fake_probe(monkeypatch, speedups):
    monkeypatch.setattr(backends_m2sa, "time_kernel_against_fp32",
                        lambda kernel, shapes: (0.002 / speedups[kernel], 0.002))
    backends_m2sa._cached_probe.cache_clear()


@pytest.mark.parametrize("kind", list(CPU_KINDS))
def test_auto_serves_the_fastest_kernel_the_record_allows_per_cpu_kind(monkeypatch, tiny_model_and_processor, kind):
    isa, kernels, int8_kernel = CPU_KINDS[kind]
    monkeypatch.setattr(backends_m2sa, "cpu_instruction_sets", lambda: isa)
    monkeypatch.setattr(backends_m2sa, "fbgemm_available", lambda: True)
    fake_probe(monkeypatch, PROBE_SPEEDUPS)
    model = tiny_model_and_processor[0]
    assert backends_m2sa.cpu_kernels(isa) == kernels
    fastest = max(kernels, key=PROBE_SPEEDUPS.get, default=None)
    # every arithmetic agrees: the fastest kernel in the probe
    backend, reason = auto_backend("cpu", with_record(model, **ALL_AGREE))
    assert backend == (backends_m2sa.KERNEL_BACKEND[fastest] if fastest else "fp32")
    if fastest:
        assert f"{PROBE_SPEEDUPS[fastest]:.2f}x fp32 in its probe" in reason
    # int8 changes 1.8 % of the labels: bf16 where this kind has it, else fp32, however fast int8 is
    backend, reason = auto_backend("cpu", with_record(model, **INT8_FLIPS))
    assert backend == ("bf16" if "bf16" in kernels else "fp32")
    if kernels and kernels != ["bf16"]:
        assert "refused: " in reason and "below 99 %" in reason
    # no record: the documented fallback, bf16 only
    assert auto_backend("cpu", model)[0] == ("bf16" if "bf16" in kernels else "fp32")
    # backend="int8" asked outright runs the int8 kernel that is fast on this kind
    assert backends_m2sa.int8_kernel() == int8_kernel
    backends_m2sa._cached_probe.cache_clear()


def test_int8_without_fbgemm_runs_int_mm(monkeypatch):
    monkeypatch.setattr(backends_m2sa, "cpu_instruction_sets", lambda: isa_of(avx2=True))
    monkeypatch.setattr(backends_m2sa, "fbgemm_available", lambda: False)
    assert backends_m2sa.int8_kernel() == "int_mm"
    assert backends_m2sa.cpu_kernels(isa_of(avx2=True)) == []  # and auto serves fp32 there


def test_a_kernel_that_loses_its_probe_is_never_served(monkeypatch, tiny_model_and_processor, image_files):
    model, processor = with_record(tiny_model_and_processor[0], **ALL_AGREE), tiny_model_and_processor[1]
    for kind in ("Xeon with AMX", "Xeon with AVX512-VNNI", "AMD EPYC Zen 4 (AVX512-BF16, VNNI)"):
        monkeypatch.setattr(backends_m2sa, "cpu_instruction_sets", lambda: CPU_KINDS[kind][0])
        fake_probe(monkeypatch, {"bf16": 2 / 3, "int_mm": 2 / 3})
        backend, reason = auto_backend("cpu", model)
        assert backend == "fp32" and "lost its probe (3.0 ms against fp32's 2.0 ms" in reason
        assert model_for_backend(model, "auto") is model
        texts, images, policy = batches(image_files)["mixed"]
        assert predict(model, processor, texts, images, batch_size=2) == predict(
            model, processor, texts, images, batch_size=2, backend="fp32")  # exactly fp32's answers
    backends_m2sa._cached_probe.cache_clear()


def test_the_probe_runs_once_per_process(monkeypatch, tiny_model_and_processor, tmp_path):
    measured = []

    def counting_probe(kernel, shapes):
        measured.append((kernel, shapes))
        return 0.001, 0.002

    monkeypatch.setattr(backends_m2sa, "cpu_instruction_sets", lambda: CPU_KINDS["Xeon with AVX512-VNNI"][0])
    monkeypatch.setattr(backends_m2sa, "time_kernel_against_fp32", counting_probe)
    backends_m2sa._cached_probe.cache_clear()
    model, processor = with_record(tiny_model_and_processor[0], **ALL_AGREE), tiny_model_and_processor[1]
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    pipe = pipeline(model=str(tmp_path), trust_remote_code=True)
    saved_backends = saved_backends_of(pipe)  # the saved code is a module of its own: give it the same fakes
    monkeypatch.setattr(saved_backends, "cpu_instruction_sets", backends_m2sa.cpu_instruction_sets)
    monkeypatch.setattr(saved_backends, "time_kernel_against_fp32", counting_probe)
    saved_backends._cached_probe.cache_clear()
    for _ in range(3):
        predict(model, processor, TEXTS, batch_size=2)
        pipe(TEXTS, batch_size=2)
        backend, reason = pipe.served_backend()
        assert backend == "int8" and "2.00x fp32 in its probe" in reason
        assert "99.5% of 500 validation tweets keep fp32's label (its record)" in reason  # the record that decided
    # once for the package's backends and once for the saved copy of them, both on the same layer shapes
    assert measured == [("int_mm", backends_m2sa.linear_shapes(model))] * 2
    backends_m2sa._cached_probe.cache_clear()
    saved_backends._cached_probe.cache_clear()


def test_the_probe_times_the_kernel_against_fp32_on_the_models_layer_shapes(tiny_model_and_processor):
    model = tiny_model_and_processor[0]
    shapes = backends_m2sa.linear_shapes(model)
    assert sum(count for _, count in shapes) == sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    kernel_seconds, fp32_seconds = backends_m2sa.time_kernel_against_fp32(backends_m2sa.int8_kernel(), shapes)
    assert 0 < kernel_seconds < 10 and 0 < fp32_seconds < 10  # real seconds; which one wins is the CPU's business


def test_fp32_is_the_model_itself_bit_for_bit(tiny_model_and_processor, image_files):
    model, processor = tiny_model_and_processor
    assert model_for_backend(model, "fp32") is model
    texts, images, _ = batches(image_files)["mixed"]
    results = predict(model, processor, texts, images, batch_size=1, backend="fp32")
    with torch.inference_mode():
        for text, image, result in zip(texts, images, results):
            logits = model(**processor(text=[text], images=None if image is None else [image])).logits
            expected = dict(zip(model.config.id2label.values(), logits.softmax(-1)[0].tolist()))
            assert result["probabilities"] == expected  # exactly: no rounding anywhere on the fp32 path


@pytest.mark.parametrize("kernel, linear_class", [("bf16", BFloat16Linear), ("int_mm", Int8Linear),
                                                  ("fbgemm", FbgemmInt8Linear)])
def test_derived_model_shares_every_tensor_but_its_linear_weights(tiny_model_and_processor, kernel, linear_class):
    model, _ = tiny_model_and_processor
    derived = backends_m2sa.derived_model(model, kernel)
    converted = [name for name, module in derived.named_modules() if isinstance(module, linear_class)]
    linear = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    assert converted == linear  # every linear layer (towers, fusion, head) converted in the derived model
    assert not any(isinstance(module, torch.nn.Linear) for module in derived.modules())
    model_tensors = {tensor.data_ptr() for tensor in (*model.parameters(), *model.buffers())}
    own = [(name, tensor) for name, tensor in derived.named_buffers() if tensor.data_ptr() not in model_tensors]
    own += [(name, tensor) for name, tensor in derived.named_parameters() if tensor.data_ptr() not in model_tensors]
    own_kinds = {name.rsplit(".", 1)[-1] for name, _ in own}
    # the converted weights (and int8's scales, bf16's biases) are all a derived model holds of its own; fbgemm's
    # int8 weights live in its packed-weight object, outside the module's tensors
    assert own_kinds == {"int_mm": {"weight_int8", "weight_scale"}, "bf16": {"weight", "bias"}, "fbgemm": set()}[kernel]
    assert all(tensor.dtype == (torch.int8 if kernel == "int_mm" else torch.bfloat16) for name, tensor in own
               if not name.endswith("weight_scale"))
    if kernel == "fbgemm":
        for name in linear:
            weight = model.get_submodule(name).weight
            unpacked = torch.ops.quantized.linear_unpack(derived.get_submodule(name).packed_weight)[0].dequantize()
            step = weight.abs().amax(dim=1, keepdim=True) / 127
            assert ((unpacked - weight).abs() <= step / 2 + 1e-6).all()  # the model's weights, rounded per row


def test_concurrent_first_calls_make_one_derived_model(tiny_model_and_processor, monkeypatch):
    model = copy.deepcopy(tiny_model_and_processor[0])
    made, original = [], backends_m2sa.derived_model
    arrived = threading.Barrier(8)

    def slow_derived_model(*args):
        made.append(args[1])
        time.sleep(0.05)  # a window for a second thread to start its own copy, were creation not serialized
        return original(*args)

    monkeypatch.setattr(backends_m2sa, "derived_model", slow_derived_model)
    results = [None] * 8

    def first_call(index):
        arrived.wait()
        results[index] = model_for_backend(model, "int8")

    threads = [threading.Thread(target=first_call, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert made == [backends_m2sa.int8_kernel()]
    assert all(result is results[0] for result in results)


def first_tensor(model, kind):
    """A parameter or buffer of `model` that is not a linear layer's: an embedding, a layer norm, a buffer."""
    for module in model.modules():
        if isinstance(module, kind):
            return next(iter(module.parameters()))
    raise AssertionError(f"no {kind.__name__} in the model")


CHANGES = {
    "linear weight (an optimizer step)": lambda model: first_tensor(model, torch.nn.Linear).mul_(1.5),
    "embedding": lambda model: first_tensor(model, torch.nn.Embedding).mul_(1.5),
    "layer norm": lambda model: first_tensor(model, torch.nn.LayerNorm).mul_(1.5),
    "load_state_dict": lambda model: model.load_state_dict(
        {name: tensor * 1.5 for name, tensor in model.state_dict().items()}),
    "replaced module": lambda model: model.resize_token_embeddings(model.config.text_config.vocab_size + 8),
}


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("change", list(CHANGES))
def test_any_change_to_the_model_remakes_its_derived_model(tiny_model_and_processor, backend, change):
    model, processor = copy.deepcopy(tiny_model_and_processor[0]), tiny_model_and_processor[1]
    inputs = processor(text=TEXTS)
    before = quietly(model_for_backend, model, backend)
    assert quietly(model_for_backend, model, backend) is before  # unchanged: reused
    with torch.no_grad():
        CHANGES[change](model)
    after = quietly(model_for_backend, model, backend)
    assert after is not before
    with torch.inference_mode():
        exact = model(**inputs).logits
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=backend == "bf16"):
            fast = after(**inputs).logits.float()
    assert torch.allclose(fast.softmax(-1), exact.softmax(-1), atol=PROBABILITY_TOLERANCE)


def test_text_only_model_runs_every_backend(tiny_towers):
    model = M2SAForSequenceClassification.from_towers(tiny_towers["bert"]).eval()
    processor = M2SAProcessor.from_towers(tiny_towers["bert"])
    fp32 = predict(model, processor, TEXTS, batch_size=3, backend="fp32")
    for backend in ("auto", *FAST_BACKENDS):
        assert_agrees(quietly(predict, model, processor, TEXTS, batch_size=3, backend=backend), fp32)


def test_bf16_on_a_cpu_without_native_bf16_warns(tiny_model_and_processor, monkeypatch):
    model, processor = tiny_model_and_processor
    monkeypatch.setattr(backends_m2sa, "cpu_instruction_sets", lambda: isa_of(avx2=True))
    with pytest.warns(UserWarning, match="backend='bf16' is much slower than fp32 here"):
        predict(model, processor, ["hello"], backend="bf16")
    assert resolve_backend("auto", "cpu", with_record(model, **ALL_AGREE)) == "fp32"  # auto never picks it there


def test_pipeline_backend_at_construction_and_per_call(saved_tiny_model_dir, image_files):
    texts, images, _ = batches(image_files)["mixed"]
    tweets = [{"text": text, "image": image} for text, image in zip(texts, images)]
    fp32_pipe = pipeline(model=str(saved_tiny_model_dir), trust_remote_code=True, backend="fp32")
    int8_pipe = pipeline(model=str(saved_tiny_model_dir), trust_remote_code=True, backend="int8")
    per_call = fp32_pipe(tweets, top_k=None, backend="int8")
    assert int8_pipe(tweets, top_k=None) == per_call
    assert fp32_pipe(tweets, top_k=None) != per_call
    assert fp32_pipe.served_backend() == ("fp32", "fp32 (as asked)")
    kernel = backends_m2sa.int8_kernel()
    assert int8_pipe.served_backend() == ("int8", f"int8 (as asked; {kernel} kernel; no agreement record; "
                                                  f"{backends_m2sa.KERNEL_ARITHMETIC[kernel]} is served only where "
                                                  f"a record allows it)")
    # the pipeline runs the saved copy of the code, whose probe is its own
    assert fp32_pipe.served_backend(backend="auto") == saved_backends_of(fp32_pipe).auto_backend("cpu", fp32_pipe.model)
    assert fp32_pipe.served_backend(autocast_dtype="bf16")[0] == "fp32"
    default_pipe = pipeline(model=str(saved_tiny_model_dir), trust_remote_code=True)
    assert default_pipe.model.config.inference_backend == "auto"
    assert default_pipe.served_backend() == saved_backends_of(default_pipe).auto_backend("cpu", default_pipe.model)


def test_bad_backends_are_refused(saved_tiny_model_dir, tiny_model_and_processor):
    pipe = pipeline(model=str(saved_tiny_model_dir), trust_remote_code=True)
    with pytest.raises(ValueError, match=r"backend must be one of \['auto', 'fp32', 'bf16', 'int8'\], got 'onnx'"):
        pipe("hello", backend="onnx")
    for backend in ("int8", "bf16", "auto"):
        with pytest.raises(ValueError, match="leave autocast_dtype unset"):
            pipe("hello", backend=backend, autocast_dtype="bf16")
    assert pipe("hello", autocast_dtype="bf16")[0]["label"] in ("negative", "neutral", "positive")  # default: fine
    model, processor = tiny_model_and_processor
    with pytest.raises(ValueError, match="backend must be one of"):
        predict(model, processor, ["hello"], backend="int4")


def test_unknown_backend_in_config_is_refused_on_load(tiny_model_and_processor):
    model, _ = tiny_model_and_processor
    saved = {**model.config.to_dict(), "inference_backend": "int4"}  # a config.json written by other code
    with pytest.raises(ValueError, match=r"`inference_backend` must be one of \('auto', 'fp32', 'bf16', 'int8'\), got 'int4'"):
        type(model.config).from_dict(saved)


EXPORTED_CHILD = textwrap.dedent(
    """
    import json, sys
    from transformers import pipeline

    model_dir, cases_path, out_path = sys.argv[1:4]
    pipe = pipeline(model=model_dir, trust_remote_code=True)
    out = {}
    for name, case in json.load(open(cases_path)).items():
        tweets = [{"text": text, "image": image} for text, image in zip(case["texts"], case["images"])]
        out[name] = pipe(tweets, top_k=None, batch_size=2, on_invalid_image=case["policy"])
    json.dump({"results": out, "config_backend": pipe.model.config.inference_backend}, open(out_path, "w"))
    """
)


def test_export_loads_without_the_package_and_answers_like_int8(saved_tiny_model_dir, image_files, tmp_path, capsys):
    out_dir = tmp_path / "exported"
    export_main(["--model", str(saved_tiny_model_dir), "--out", str(out_dir), "--backend", "int8"])
    assert "backend int8" in capsys.readouterr().out
    assert json.loads((out_dir / "config.json").read_text())["inference_backend"] == "int8"
    assert (out_dir / "pipeline_m2sa.py").is_file() and (out_dir / "backends_m2sa.py").is_file()

    cases = {name: {"texts": texts, "images": images, "policy": policy}
             for name, (texts, images, policy) in batches(image_files).items()}
    cases_path, out_path = tmp_path / "cases.json", tmp_path / "out.json"
    cases_path.write_text(json.dumps(cases))
    result = run_without_package(EXPORTED_CHILD, out_dir, cases_path, out_path, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    child = json.loads(out_path.read_text())
    assert child["config_backend"] == "int8"

    int8_pipe = pipeline(model=str(saved_tiny_model_dir), trust_remote_code=True, backend="int8")
    for name, case in cases.items():
        tweets = [{"text": text, "image": image} for text, image in zip(case["texts"], case["images"])]
        expected = int8_pipe(tweets, top_k=None, batch_size=2, on_invalid_image=case["policy"])
        for got, want in zip(child["results"][name], expected):
            assert [entry["label"] for entry in got] == [entry["label"] for entry in want]
            assert [entry["score"] for entry in got] == pytest.approx([entry["score"] for entry in want], abs=1e-6)
            assert [(e["image_used"], e["image_error"]) for e in got] == [(e["image_used"], e["image_error"])
                                                                          for e in want]
