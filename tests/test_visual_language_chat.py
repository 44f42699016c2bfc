"""samples/visual_language_chat.py on the committed tiny LLaVA fixtures: fast tier,
needs requirements.txt, pytest and Pillow (tests/requirements-fast.txt).

Known-good source: transformers' image processor (Pillow backend) and greedy
generate() on the templated conversation, recorded in tests/data/tiny-llava/*/ by
tests/fixtures/tiny_llava.py; the resize is checked against Pillow itself.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import (
    REPO,
    check_bad_argument,
    check_bad_input,
    check_ctrl_c,
    check_same_weights,
    copy_without,
    detokenize,
    load_sample,
    parse_stats,
    png_file,
    rebuild,
    run_sample,
)

SAMPLE = "visual_language_chat.py"
DATA = REPO / "tests" / "data" / "tiny-llava"
PICTURES = DATA / "pictures"
KINDS = ("clip", "siglip")


def expected(kind: str) -> dict:
    return json.loads((DATA / kind / "expected.json").read_text())


CASES = [(kind, name) for kind in KINDS for name in sorted(expected(kind)["pictures"])]


def answers(kind: str, name: str) -> str:
    """stdout for transformers' turns on a picture: the text their ids decode to."""
    ir = DATA / kind / "ir"
    turns = expected(kind)["pictures"][name]
    return "".join(detokenize(ir, turn["new_ids"]) + "\n" for turn in turns)


def ask(kind: str, picture: Path, questions: list[str], *extra):
    stdin = "".join(question + "\n" for question in questions)
    max_new_tokens = expected(kind)["max_new_tokens"]
    args = ["--f32", "--max-new-tokens", max_new_tokens, *extra]
    return run_sample(SAMPLE, DATA / kind / "ir", picture, *args, stdin=stdin)


@pytest.mark.parametrize("kind, name", CASES, ids=[f"{k}-{n}" for k, n in CASES])
def test_pixel_values_equal_transformers_bit_for_bit(kind, name):
    sample = load_sample(SAMPLE)
    settings = sample.read_image_settings(DATA / kind / "ir")
    ours = sample.pixel_values(sample.read_png(PICTURES / name), settings)
    theirs = np.load(DATA / kind / "pixels.npz")[name]
    assert ours.shape == (1, *theirs.shape)
    assert ours.dtype == np.float32
    assert np.array_equal(ours[0], theirs)


@pytest.mark.parametrize("kind, name", CASES, ids=[f"{k}-{n}" for k, n in CASES])
def test_answers_equal_transformers(kind, name):
    """The first answer, and for two pictures a second turn, token for token (the
    text transformers' ids decode to, the prompt's length with its image tokens)."""
    case = expected(kind)
    turns = case["pictures"][name]
    questions = [case["question"], case["follow_up"]][: len(turns)]
    run = ask(kind, PICTURES / name, questions)
    assert run.returncode == 0, run.stderr
    assert run.stdout == answers(kind, name)
    lines = run.stderr.splitlines()
    assert len(lines) == len(turns)
    for line, turn in zip(lines, turns):
        stats = parse_stats(line)
        assert stats["prompt_tokens"] == len(turn["prompt_ids"])
        assert stats["new_tokens"] == len(turn["new_ids"])
    assert parse_stats(lines[0])["image_tokens"] == 64
    assert all("image_tokens" not in parse_stats(line) for line in lines[1:])


def test_the_picture_moves_the_answer():
    """Different pictures give different answers, or the tests above prove nothing
    about the picture."""
    for kind in KINDS:
        answers = {
            tuple(turns[0]["new_ids"]) for turns in expected(kind)["pictures"].values()
        }
        assert len(answers) >= 5


def test_blank_lines_are_skipped():
    case = expected("clip")
    name = "rgb-landscape-small.png"
    stdin = ["", "  ", case["question"], "", case["follow_up"]]
    run = ask("clip", PICTURES / name, stdin)
    assert run.stdout == answers("clip", name)


# Sizes up and down, odd, one pixel wide or tall, equal on one side (no pass there),
# and shapes where Pillow 13 resizes the height first.
RESIZES = [
    ((1, 1), (5, 7)),
    ((1, 40), (17, 3)),
    ((40, 1), (3, 17)),
    ((37, 50), (112, 151)),
    ((301, 203), (112, 112)),
    ((112, 113), (112, 112)),
    ((113, 112), (112, 112)),
    ((220, 66), (208, 61)),
    ((182, 31), (109, 215)),
    ((80, 80), (80, 33)),
    ((80, 80), (33, 80)),
]


def test_resize_equals_pillow():
    sample = load_sample(SAMPLE)
    rng = np.random.default_rng(0)
    sizes = list(RESIZES)
    for _ in range(30):
        sizes.append((tuple(rng.integers(1, 260, 2)), tuple(rng.integers(1, 260, 2))))
    for (height, width), (new_height, new_width) in sizes:
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        # Smooth pictures too: noise alone clips at 0 and 255 often.
        if rng.random() < 0.5:
            image = np.sort(image, axis=1)
        theirs = Image.fromarray(image).resize((new_width, new_height), Image.BICUBIC)
        ours = sample.resize(image, int(new_height), int(new_width))
        assert np.array_equal(ours, np.asarray(theirs)), (image.shape, theirs.size)


def folder_with(tmp_path: Path, change) -> Path:
    folder = tmp_path / "ir"
    shutil.copytree(DATA / "clip" / "ir", folder)
    change(folder)
    return folder


def other_family(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "qwen2_vl"
    (folder / "config.json").write_text(json.dumps(config))


def not_bicubic(folder: Path) -> None:
    config = json.loads((folder / "processor_config.json").read_text())
    config["image_processor"]["resample"] = 2
    (folder / "processor_config.json").write_text(json.dumps(config))


def test_a_jpeg_is_refused_with_how_to_convert_it(tmp_path):
    picture = tmp_path / "photo.jpg"
    Image.open(PICTURES / "rgb-landscape-small.png").save(picture)
    run = ask("clip", picture, ["Hi"])
    check_bad_input(run, f"{picture} is not a PNG: convert it to one (8-bit RGB)")


def test_a_16_bit_png_is_refused(tmp_path):
    picture = tmp_path / "deep.png"
    picture.write_bytes(png_file(np.zeros((2, 2, 1), dtype=np.uint8), 0, depth=16))
    run = ask("clip", picture, ["Hi"])
    check_bad_input(run, f"{picture} is not an 8-bit non-interlaced PNG: convert it")


@pytest.mark.parametrize(
    "missing",
    ["openvino_vision_embeddings_model.xml", "openvino_language_model.xml"],
)
def test_a_missing_ir_is_refused(missing, tmp_path):
    folder = copy_without(DATA / "clip" / "ir", missing, tmp_path / "ir")
    run = run_sample(SAMPLE, folder, PICTURES / "rgb-landscape-small.png", stdin="Hi\n")
    hint = "export one with optimum-cli export openvino --task image-text-to-text"
    check_bad_input(run, f"no {folder / missing}: {hint}")


def test_an_llm_only_folder_is_refused():
    folder = REPO / "tests" / "data" / "tiny-llama" / "ir"
    run = run_sample(SAMPLE, folder, PICTURES / "rgb-landscape-small.png", stdin="Hi\n")
    hint = "export one with optimum-cli export openvino --task image-text-to-text"
    check_bad_input(run, f"no {folder / 'openvino_language_model.xml'}: {hint}")


def test_another_vlm_family_is_refused(tmp_path):
    folder = folder_with(tmp_path, other_family)
    run = run_sample(SAMPLE, folder, PICTURES / "rgb-landscape-small.png", stdin="Hi\n")
    check_bad_input(run, f"{folder}: a qwen2_vl model, not LLaVA")


def test_a_resample_other_than_bicubic_is_refused(tmp_path):
    folder = folder_with(tmp_path, not_bicubic)
    run = run_sample(SAMPLE, folder, PICTURES / "rgb-landscape-small.png", stdin="Hi\n")
    check_bad_input(run, "resample 2: only bicubic (3) is done")


def test_zero_new_tokens_is_a_bad_argument():
    run = ask(
        "clip", PICTURES / "rgb-landscape-small.png", ["Hi"], "--max-new-tokens", 0
    )
    check_bad_argument(run, "--max-new-tokens must be at least 1")


def test_ctrl_c_exits_130_without_traceback():
    """Interrupted while it waits for a question."""

    def asked_first(process) -> bool:
        return b"tokens/s" in process.stderr.readline()

    check_ctrl_c(
        SAMPLE,
        DATA / "clip" / "ir",
        PICTURES / "rgb-landscape-small.png",
        "--max-new-tokens",
        3,
        started=asked_first,
        stdin=b"Hi\n",
    )


@pytest.mark.reference
def test_committed_fixtures_are_what_the_script_builds(tmp_path):
    """tests/fixtures/tiny_llava.py afresh: the same pictures, weights, and
    transformers' pixel values and answers."""
    rebuilt = rebuild("tiny_llava.py", tmp_path / "tiny-llava")
    for picture in sorted(PICTURES.iterdir()):
        assert (
            rebuilt / "pictures" / picture.name
        ).read_bytes() == picture.read_bytes()
    for kind in KINDS:
        fresh = json.loads((rebuilt / kind / "expected.json").read_text())
        assert fresh == expected(kind), kind
        fresh_pixels = np.load(rebuilt / kind / "pixels.npz")
        pixels = np.load(DATA / kind / "pixels.npz")
        for name in pixels.files:
            assert np.array_equal(fresh_pixels[name], pixels[name]), (kind, name)
        for name in ("language", "text_embeddings", "vision_embeddings"):
            xml = f"openvino_{name}_model.xml"
            check_same_weights(rebuilt / kind / "ir" / xml, DATA / kind / "ir" / xml)


def genai_folder(kind: str, tmp_path: Path) -> Path:
    """A copy of the fixture with preprocessor_config.json written out: openvino_genai
    reads the image processor's settings only there."""
    folder = tmp_path / kind
    shutil.copytree(DATA / kind / "ir", folder)
    settings = json.loads((folder / "processor_config.json").read_text())
    settings = settings["image_processor"]
    (folder / "preprocessor_config.json").write_text(json.dumps(settings))
    return folder


@pytest.mark.reference
def test_clip_fixture_answers_equal_openvino_genai(tmp_path):
    """openvino_genai's VLMPipeline on the same IR and picture gives the sample's
    first answer, for every picture of the CLIP fixture."""
    import openvino as ov
    import openvino_genai

    folder = genai_folder("clip", tmp_path)
    pipeline = openvino_genai.VLMPipeline(
        str(folder),
        "CPU",
        INFERENCE_PRECISION_HINT="f32",
        KV_CACHE_PRECISION="f32",
        DYNAMIC_QUANTIZATION_GROUP_SIZE="0",
    )
    case = expected("clip")
    config = openvino_genai.GenerationConfig()
    config.max_new_tokens = case["max_new_tokens"]
    for name in sorted(case["pictures"]):
        rgb = np.asarray(Image.open(PICTURES / name).convert("RGB"))
        images = [ov.Tensor(rgb[None])]
        result = pipeline.generate(
            case["question"], images=images, generation_config=config
        )
        run = ask("clip", PICTURES / name, [case["question"]])
        assert run.returncode == 0, run.stderr
        assert run.stdout == result.texts[0] + "\n", name
