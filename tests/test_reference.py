"""Reference tier: recompute the expected outputs with the reference implementations
themselves.

Needs tests/requirements.txt (torch, transformers, optimum-intel, openvino_genai). Run
with `pytest -m reference`.
"""

import json

import numpy as np
import pytest

from conftest import (
    FAMILIES,
    FAMILY_NAMES,
    SAMPLES_DIR,
    TINY_INPAINT,
    TINY_LCM,
    TINY_LLAMA,
    TINY_SD,
    chat_args,
    chat_cases,
    check_against_reference,
    check_chat,
    check_family_beam,
    check_family_chat,
    check_family_greedy,
    check_image_case,
    check_same_weights,
    family_expected,
    generate_image,
    hypotheses,
    image_cases,
    one_line,
    read_cases,
    read_png,
    rebuild,
    run_sample,
    tiny_llama_cases,
)

pytestmark = pytest.mark.reference

# Prompts for the real model: ASCII, code, Chinese, emoji, a list (multi-byte text
# streams through them).
REAL_PROMPTS = [
    "The Sun is a star. Its light",
    "def quicksort(items):\n",
    "中国的首都是",
    "My favourite emoji are 🙂 and",
    "Three reasons to learn Python:\n1.",
    "Paris",
]
F32_HINTS = {
    "INFERENCE_PRECISION_HINT": "f32",
    "KV_CACHE_PRECISION": "f32",
    "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0",
}

# The IR files of an LLM folder whose constants are compared after a rebuild.
LLM_XML = ("openvino_model.xml", "openvino_tokenizer.xml", "openvino_detokenizer.xml")


def check_same_beam_cases(rebuilt: list[dict], committed: list[dict]) -> None:
    """Token ids and texts exactly; scores within 1e-5 relative: torch's float32 sums
    differ in the last bits between CPUs (an AMX Xeon's -5.917282581329346 against an
    EPYC's -5.9172821044921875)."""
    assert len(rebuilt) == len(committed)
    for new_case, old_case in zip(rebuilt, committed):
        new_hypotheses = new_case.pop("hypotheses")
        old_hypotheses = old_case.pop("hypotheses")
        assert new_case == old_case
        for new_group, old_group in zip(new_hypotheses, old_hypotheses, strict=True):
            for new, old in zip(new_group, old_group, strict=True):
                assert new.pop("score") == pytest.approx(old.pop("score"), rel=1e-5)
                assert new == old


def test_committed_fixture_is_what_the_script_builds(rebuilt_tiny_llama):
    """The fast tier's committed IR and expected outputs equal a fresh build from
    transformers."""
    assert tiny_llama_cases(rebuilt_tiny_llama) == tiny_llama_cases()
    assert chat_cases(rebuilt_tiny_llama) == chat_cases()
    check_same_beam_cases(
        read_cases(rebuilt_tiny_llama / "expected_beam.json", "tiny_llm.py"),
        read_cases(TINY_LLAMA / "expected_beam.json", "tiny_llm.py"),
    )
    for name in (
        "openvino_model.xml",
        "openvino_tokenizer.xml",
        "openvino_detokenizer.xml",
    ):
        assert (rebuilt_tiny_llama / "ir" / name).read_bytes() == (
            TINY_LLAMA / "ir" / name
        ).read_bytes(), name
    for name in LLM_XML:
        check_same_weights(rebuilt_tiny_llama / "ir" / name, TINY_LLAMA / "ir" / name)


def test_rebuilt_tiny_llama_matches_transformers(rebuilt_tiny_llama):
    """Known-good source: transformers generate(do_sample=False), recomputed just now on
    the same weights."""
    for case in tiny_llama_cases(rebuilt_tiny_llama):
        check_against_reference(
            run_sample(
                "greedy.py",
                rebuilt_tiny_llama / "ir",
                case["prompt"],
                "--max-new-tokens",
                case["max_new_tokens"],
                "--f32",
            ),
            case,
        )


def test_rebuilt_tiny_chat_matches_transformers(rebuilt_tiny_llama):
    """Known-good source: transformers apply_chat_template + greedy generate() per turn,
    recomputed just now."""
    for conversation in chat_cases(rebuilt_tiny_llama):
        check_chat(
            run_sample(
                "chat.py",
                rebuilt_tiny_llama / "ir",
                *chat_args(conversation),
                stdin="".join(turn + "\n" for turn in conversation["turns"]),
            ),
            conversation["answers"],
        )


CHAT_TURNS = [
    "Hi! What is your name?",
    "What is the capital of France?",
    "Name three colours.",
    "Thank you, bye!",
]


def test_default_model_chat_matches_openvino_genai_per_turn(default_model, genai_sdpa):
    """Known-good source: openvino_genai's greedy generate on the whole templated history
    each turn (rendered with jinja2 as transformers renders it). The chat feeds only
    what its cache lacks: SmolLM2's template extends the previous history and answer, so
    each turn's history minus the tokens fed before (all of the answer's but the last
    when it stopped at --max-new-tokens)."""
    import jinja2.sandbox
    import openvino as ov
    import openvino_genai

    max_new_tokens = 30
    chat = run_sample(
        "chat.py",
        default_model,
        "--max-new-tokens",
        max_new_tokens,
        "--f32",
        stdin="".join(turn + "\n" for turn in CHAT_TURNS),
    )
    assert chat.returncode == 0, chat.stderr
    core = ov.Core()
    rt_info = core.read_model(default_model / "openvino_tokenizer.xml").get_rt_info()
    tokenizer = core.compile_model(default_model / "openvino_tokenizer.xml", "CPU")
    template = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True
    ).from_string(rt_info["chat_template"].astype(str))
    config = openvino_genai.GenerationConfig(
        max_new_tokens=max_new_tokens, apply_chat_template=False, do_sample=False
    )
    messages, answers, fed, cached = [], [], [], 0
    for turn in CHAT_TURNS:
        messages.append({"role": "user", "content": turn})
        history = template.render(messages=messages, add_generation_prompt=True)
        result = genai_sdpa.generate([history], config)
        history_tokens = tokenizer([history])["input_ids"].shape[1]
        # genai counts the EOS that ended an answer; the sample does not.
        generated = result.perf_metrics.get_num_generated_tokens()
        new_tokens = generated - (generated < max_new_tokens)
        answers.append(result.texts[0])
        messages.append({"role": "assistant", "content": answers[-1]})
        fed.append(f"{history_tokens - cached} tokens fed, {new_tokens} new tokens")
        cached = history_tokens + new_tokens - (new_tokens == max_new_tokens)
    assert chat.stdout == "".join(answer + "\n" for answer in answers)
    assert chat.stderr.splitlines() == fed


def check_equals_genai(pipe, name: str, model, prompt: str, *args) -> None:
    """samples/NAME's text for PROMPT (40 new tokens) equals openvino_genai's greedy
    generate, no chat template."""
    import openvino_genai

    config = openvino_genai.GenerationConfig(
        max_new_tokens=40, apply_chat_template=False, do_sample=False
    )
    expected = pipe.generate(prompt, config)
    run = run_sample(name, model, prompt, "--max-new-tokens", 40, *args)
    assert run.returncode == 0, run.stderr
    assert run.stdout == str(expected) + "\n"


@pytest.fixture(scope="module")
def genai_sdpa(default_model):
    """openvino_genai on the stateful model as the sample runs it (SDPA, not paged
    attention), in f32."""
    import openvino_genai

    return openvino_genai.LLMPipeline(
        str(default_model), "CPU", ATTENTION_BACKEND="SDPA", **F32_HINTS
    )


@pytest.mark.parametrize("prompt", REAL_PROMPTS)
def test_default_model_matches_openvino_genai(prompt, default_model, genai_sdpa):
    """Known-good source: openvino_genai LLMPipeline greedy on the same IR, f32, no chat
    template."""
    check_equals_genai(genai_sdpa, "greedy.py", default_model, prompt, "--f32")


@pytest.fixture(scope="module")
def genai_paged(default_model):
    import openvino_genai

    return openvino_genai.LLMPipeline(
        str(default_model), "CPU"
    )  # its default: paged attention, default precision


@pytest.mark.parametrize(
    "prompt", [*REAL_PROMPTS, "The lighthouse keeper climbed the stairs. " * 40]
)
def test_paged_attention_matches_openvino_genai_default(
    prompt, default_model, genai_paged
):
    """Known-good source: openvino_genai's default LLMPipeline (the same PagedAttention
    kernels and u8 cache), greedy, default precision; the last prompt (about 280 tokens)
    fills several cache blocks."""
    check_equals_genai(genai_paged, "paged_attention.py", default_model, prompt)


def test_default_model_runs_with_no_arguments(default_model):
    """The README's first command: no arguments, the default model and prompt, text on
    stdout."""
    run = run_sample("greedy.py", "--max-new-tokens", 16)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() and "16 new tokens" in run.stderr


# Group beam search against openvino_genai. Its rules differ from transformers' (which
# the sample follows) in three places: it sums the softmax in float32 one term at a time
# (log-probs off by ~1e-4, enough to flip near ties), it judges the early stop by the
# previous step's best beam and length, and at the length limit it finishes every
# running beam rather than the top candidates. So the prompts here are ones where no
# such case arises; each must still agree in all three stopping modes.
GENAI_AGREEING_PROMPTS = {
    "tiny": [
        "Hello, world! How are you today?",
        "Party time 🎉🍕🚀 with",
        "The",
        "你好",
        "OpenVINO runs",
        "for i in range(10):",
        "Numbers like 3.14",
    ],
    "real": [
        "The",
        "北京是",
        "一二三四五",
        "Once upon a time",
        "The capital of France is",
        "Water boils at",
        "My favourite emoji are 🙂 and",
    ],
}
STOP_CRITERIA = {"true": "EARLY", "false": "HEURISTIC", "never": "NEVER"}


@pytest.fixture(scope="module")
def genai_pipelines(default_model):
    import openvino_genai

    folders = {"tiny": TINY_LLAMA / "ir", "real": default_model}
    return {
        name: openvino_genai.LLMPipeline(
            str(folder), "CPU", ATTENTION_BACKEND="SDPA", **F32_HINTS
        )
        for name, folder in folders.items()
    }


@pytest.mark.parametrize("early_stopping", STOP_CRITERIA)
@pytest.mark.parametrize("model", GENAI_AGREEING_PROMPTS)
def test_group_beam_search_matches_openvino_genai(
    model, early_stopping, genai_pipelines, default_model
):
    """Known-good source: openvino_genai LLMPipeline group beam search (15 beams, 3
    groups, diversity 1.0)."""
    import openvino_genai

    config = openvino_genai.GenerationConfig(
        max_new_tokens=20,
        num_beams=15,
        num_beam_groups=3,
        diversity_penalty=1.0,
        length_penalty=1.0,
        num_return_sequences=15,
        apply_chat_template=False,
    )
    config.stop_criteria = getattr(
        openvino_genai.StopCriteria, STOP_CRITERIA[early_stopping]
    )
    prompts = GENAI_AGREEING_PROMPTS[model]
    folder = TINY_LLAMA / "ir" if model == "tiny" else default_model
    run = run_sample(
        "beam_search.py", folder, *prompts, "--early-stopping", early_stopping, "--f32"
    )
    assert run.returncode == 0, run.stderr
    got = hypotheses(run.stdout)
    assert len(got) == 15 * len(prompts)
    for i, prompt in enumerate(prompts):
        expected = genai_pipelines[model].generate(prompt, config)
        assert [text for _, text in got[15 * i : 15 * (i + 1)]] == [
            one_line(text) for text in expected.texts
        ]
        assert (
            max(
                abs(a - b)
                for (a, _), b in zip(got[15 * i : 15 * (i + 1)], expected.scores)
            )
            < 1e-3
        )


def test_committed_group_beams_are_what_genai_gives(tmp_path):
    """The fast tier's diverse beam search expectations (tests/fixtures/genai_group_beams.py)
    equal a fresh openvino_genai run: texts exactly, scores within 1e-5 relative (float32
    sums may differ in the last bits between CPUs)."""
    out = tmp_path / "expected_group_beam.json"
    rebuild("genai_group_beams.py", out)
    rebuilt = read_cases(out, "genai_group_beams.py")
    committed = read_cases(
        TINY_LLAMA / "expected_group_beam.json", "genai_group_beams.py"
    )
    for new, old in zip(rebuilt, committed, strict=True):
        assert new.pop("scores") == pytest.approx(old.pop("scores"), rel=1e-5)
        assert new == old


@pytest.fixture(scope="module")
def rebuilt_tiny_sd(tmp_path_factory):
    """tests/fixtures/tiny_sd.py run afresh: new pipeline, IR (optimum-intel) and diffusers'
    images."""
    return rebuild("tiny_sd.py", tmp_path_factory.mktemp("tiny-sd"))


def test_committed_sd_fixture_is_what_the_script_builds(rebuilt_tiny_sd):
    """Same cases, same weights; diffusers' images within one level (torch's CPU kernels
    may round differently)."""
    assert image_cases(rebuilt_tiny_sd) == image_cases(TINY_SD)
    for name in ("text_encoder", "unet", "vae_decoder"):
        path = f"ir/{name}/openvino_model.xml"
        check_same_weights(rebuilt_tiny_sd / path, TINY_SD / path)
    for name in image_cases(TINY_SD):
        rebuilt, committed = (
            np.load(folder / "expected" / f"{name}.npy")
            for folder in (rebuilt_tiny_sd, TINY_SD)
        )
        assert np.abs(rebuilt.astype(int) - committed).max() <= 1, name


@pytest.mark.parametrize("name", image_cases(TINY_SD))
def test_rebuilt_tiny_sd_matches_diffusers(name, rebuilt_tiny_sd, tmp_path):
    """Known-good source: diffusers' StableDiffusionPipeline (EulerDiscreteScheduler),
    recomputed just now."""
    expected = np.load(rebuilt_tiny_sd / "expected" / f"{name}.npy")
    case = image_cases(rebuilt_tiny_sd)[name]
    check_image_case(
        "stable_diffusion.py", case, expected, tmp_path, rebuilt_tiny_sd / "ir"
    )


def test_pillow_reads_the_png_back(tmp_path):
    """A standard decoder gets the same pixels as the tests' strict reader, for a square
    and a non-square image."""
    from PIL import Image

    for name in ("cfg", "non-square"):
        case = image_cases(TINY_SD)[name]
        output = tmp_path / f"{name}.png"
        assert (
            generate_image(
                "stable_diffusion.py", case, TINY_SD / "ir", output
            ).returncode
            == 0
        )
        with Image.open(tmp_path / f"{name}.png") as image:
            assert image.mode == "RGB"
            assert np.array_equal(np.asarray(image), read_png(tmp_path / f"{name}.png"))


def test_committed_sampler_fixture_is_what_the_script_builds(tmp_path_factory):
    """The fast tier's sampling test counts draws against probabilities that
    transformers' warpers gave (tests/fixtures/tiny_sampler.py): a fresh build gives the same
    IR and letters, the probabilities within 1e-6 relative (torch's float32 softmax may
    differ in the last bits between CPUs)."""
    rebuilt = rebuild("tiny_sampler.py", tmp_path_factory.mktemp("tiny-sampler"))
    committed = TINY_LLAMA.parent / "tiny-sampler"
    for name in ("openvino_model.xml", "openvino_tokenizer.xml"):
        check_same_weights(rebuilt / "ir" / name, committed / "ir" / name)
    new_cases = read_cases(rebuilt / "expected.json", "tiny_sampler.py")
    old_cases = read_cases(committed / "expected.json", "tiny_sampler.py")
    for new, old in zip(new_cases, old_cases, strict=True):
        new_probabilities = new.pop("probabilities")
        old_probabilities = old.pop("probabilities")
        assert new == old
        assert list(new_probabilities) == list(old_probabilities)
        for letter, probability in new_probabilities.items():
            assert probability == pytest.approx(old_probabilities[letter], rel=1e-6)


def test_committed_img2img_cases_are_what_diffusers_gives(tmp_path):
    """tests/fixtures/tiny_img2img.py afresh: the same input PNGs (Pillow's bytes), and
    diffusers' images within one level (torch's CPU kernels round differently)."""
    rebuilt = rebuild("tiny_img2img.py", tmp_path)
    for png in sorted((TINY_SD / "inputs").glob("*.png")):
        assert (rebuilt / "inputs" / png.name).read_bytes() == png.read_bytes()
    committed = read_cases(
        TINY_SD / "expected-img2img" / "cases.json", "tiny_img2img.py"
    )
    fresh = read_cases(rebuilt / "expected-img2img" / "cases.json", "tiny_img2img.py")
    assert fresh == committed
    for name in committed:
        new = np.load(rebuilt / "expected-img2img" / f"{name}.npy").astype(int)
        old = np.load(TINY_SD / "expected-img2img" / f"{name}.npy").astype(int)
        assert np.abs(new - old).max() <= 1, name


def test_committed_inpainting_fixture_is_what_the_script_builds(tmp_path):
    """tests/fixtures/tiny_inpaint.py afresh: the same IR weights and input PNGs, and
    diffusers' images within one level (torch's CPU kernels round differently)."""
    rebuilt = rebuild("tiny_inpaint.py", tmp_path)
    for network in ("unet", "vae_encoder", "vae_decoder", "text_encoder"):
        name = f"{network}/openvino_model.xml"
        check_same_weights(rebuilt / "ir" / name, TINY_INPAINT / "ir" / name)
    for png in sorted((TINY_INPAINT / "inputs").glob("*.png")):
        assert (rebuilt / "inputs" / png.name).read_bytes() == png.read_bytes()
    committed = read_cases(TINY_INPAINT / "expected" / "cases.json", "tiny_inpaint.py")
    assert read_cases(rebuilt / "expected" / "cases.json", "tiny_inpaint.py") == (
        committed
    )
    for name in committed:
        new = np.load(rebuilt / "expected" / f"{name}.npy").astype(int)
        old = np.load(TINY_INPAINT / "expected" / f"{name}.npy").astype(int)
        assert np.abs(new - old).max() <= 1, name


def test_png_reader_reads_what_pillow_writes(tmp_path):
    """image_to_image.py's read_png against Pillow's convert("RGB") on every colour
    type Pillow writes at 8 bits (L, LA, RGB, RGBA, P, P with transparency), smooth and
    noisy pictures, at three compression settings; Pillow's rows use all five
    filters among them."""
    import importlib.util
    import io
    import zlib

    from PIL import Image

    spec = importlib.util.spec_from_file_location(
        "image_to_image", SAMPLES_DIR / "image_to_image.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rng = np.random.default_rng(1)
    y, x = np.mgrid[:40, :56]
    smooth = np.stack([x * 4, y * 6, (x + y) * 3], axis=-1).astype(np.uint8)
    noisy = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    alpha = Image.fromarray((x * 4).astype(np.uint8))
    filters = set()
    for picture in (smooth, noisy):
        rgb = Image.fromarray(picture)
        images = [rgb, rgb.convert("L"), rgb.convert("LA"), rgb.quantize(50)]
        rgba = rgb.copy()
        rgba.putalpha(alpha)
        transparent = rgb.quantize(50)
        transparent.info["transparency"] = 3
        images += [rgba, transparent]
        for image in images:
            for options in ({}, {"optimize": True}, {"compress_level": 1}):
                path = tmp_path / "in.png"
                buffer = io.BytesIO()
                image.save(buffer, "PNG", **options)
                path.write_bytes(buffer.getvalue())
                read = module.read_png(path)
                expected = np.array(Image.open(path).convert("RGB"))
                assert (read == expected).all(), (image.mode, options)
                data = buffer.getvalue()
                start = data.index(b"IDAT") + 4
                length = int.from_bytes(data[start - 8 : start - 4], "big")
                rows = zlib.decompress(data[start : start + length])
                stride = len(rows) // image.height
                filters |= set(rows[::stride])
    assert filters == {0, 1, 2, 3, 4}, filters


@pytest.fixture(scope="module")
def rebuilt_tiny_lcm(tmp_path_factory):
    """tests/fixtures/tiny_lcm.py run afresh: new pipeline, IR (optimum-intel) and diffusers'
    images."""
    return rebuild("tiny_lcm.py", tmp_path_factory.mktemp("tiny-lcm"))


@pytest.mark.parametrize("name", image_cases(TINY_LCM))
def test_rebuilt_tiny_lcm_matches_diffusers(name, rebuilt_tiny_lcm, tmp_path):
    """Known-good source: diffusers' LatentConsistencyModelPipeline with the sample's
    latents and per-step noise injected, recomputed just now; the committed images agree
    with it within one level too."""
    expected = np.load(rebuilt_tiny_lcm / "expected" / f"{name}.npy")
    assert (
        np.abs(
            expected.astype(int) - np.load(TINY_LCM / "expected" / f"{name}.npy")
        ).max()
        <= 1
    )
    case = image_cases(rebuilt_tiny_lcm)[name]
    check_image_case("lcm.py", case, expected, tmp_path, rebuilt_tiny_lcm / "ir")


@pytest.fixture(scope="module")
def rebuilt_families(tmp_path_factory):
    """tests/fixtures/tiny_families.py run afresh: every family's model, IR and transformers'
    outputs, today."""
    return rebuild("tiny_families.py", tmp_path_factory.mktemp("families"))


def test_committed_families_are_what_the_script_builds(rebuilt_families):
    """The fast tier's committed family IRs and expected outputs equal a fresh build
    (the XML files differ only in generated node names, so the weights are compared),
    but the chats of a template that writes today's date."""
    for family in FAMILY_NAMES:
        new = family_expected(rebuilt_families / family)
        old = family_expected(FAMILIES / family)
        assert new["prompts"] == old["prompts"], family
        for new_case, old_case in zip(new["beam"], old["beam"], strict=True):
            pairs = zip(new_case["hypotheses"], old_case["hypotheses"], strict=True)
            for new_hypothesis, old_hypothesis in pairs:
                # Within 1e-5: torch's float32 sums differ in the last bits by CPU.
                new_score = new_hypothesis.pop("score")
                assert new_score == pytest.approx(old_hypothesis.pop("score"), rel=1e-5)
                assert new_hypothesis == old_hypothesis
        assert [c for c in new["chats"] if not c["dated"]] == [
            c for c in old["chats"] if not c["dated"]
        ], family
        for name in LLM_XML:
            check_same_weights(
                rebuilt_families / family / "ir" / name, FAMILIES / family / "ir" / name
            )
        # The stop tokens and defaults the samples read.
        name = "generation_config.json"
        assert json.loads((rebuilt_families / family / "ir" / name).read_text()) == (
            json.loads((FAMILIES / family / "ir" / name).read_text())
        ), family


def test_rebuilt_dated_chat_matches_transformers_today(rebuilt_families):
    """Llama 3's template dates its system header with strftime_now: transformers'
    apply_chat_template + greedy per turn, recomputed today."""
    chats = family_expected(rebuilt_families / "llama3")["chats"]
    assert chats and all(conversation["dated"] for conversation in chats)
    for conversation in chats:
        check_family_chat(rebuilt_families / "llama3", conversation)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_rebuilt_families_match_transformers(family, rebuilt_families, tmp_path):
    """greedy.py and beam_search.py on the fresh build, against its fresh outputs."""
    check_family_greedy("greedy.py", rebuilt_families / family, tmp_path)
    check_family_beam(rebuilt_families / family)
