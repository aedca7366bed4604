import numpy as np
import pytest

from sam3_video.errors import BadRequestError
from sam3_video.types import MAX_PHRASE_CHARS, MAX_PHRASES, FrameResult, frame_order, parse_prompts, phrases_of


def _result(ids, h=4, w=5):
    n = len(ids)
    return FrameResult(3, ids, [f"l{i}" for i in ids], np.full(n, 0.5), np.zeros((n, 4)), np.zeros((n, h, w), bool))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("car, person", ("car", "person")),
        ("  car ,, person ,", ("car", "person")),
        ("red  car", ("red car",)),
        ("car, Car, person", ("car", "person")),
        (",,, ", ()),
        ("", ()),
        (["car", "tree, rock"], ("car", "tree", "rock")),
        ("人, 猫", ("人", "猫")),
        ("автомобиль, سيارة", ("автомобиль", "سيارة")),
        ("<img src=x onerror=alert(1)>", ("<img src=x onerror=alert(1)>",)),  # just text
        ("car\x00\x1b[31m, per\u200bson\n", ("car [31m", "per son")),  # control characters are spaces
        ("x" * MAX_PHRASE_CHARS, ("x" * MAX_PHRASE_CHARS,)),
    ],
)
def test_parse_prompts(text, expected):
    assert parse_prompts(text) == expected


def test_too_long_or_too_many_phrases_are_sentences():
    with pytest.raises(BadRequestError, match=f"is {MAX_PHRASE_CHARS + 1} characters long; SAM3 reads a few words"):
        parse_prompts("car, " + "y" * (MAX_PHRASE_CHARS + 1))
    with pytest.raises(BadRequestError, match=f"give at most {MAX_PHRASES}"):
        parse_prompts(",".join(f"thing {i}" for i in range(MAX_PHRASES + 1)))


@pytest.mark.parametrize(
    "n, start, direction, limit, expected",
    [
        (6, 2, "forward", None, [2, 3, 4, 5]),
        (6, 2, "backward", None, [2, 1, 0]),
        (6, 2, "both", None, [2, 3, 4, 5, 1, 0]),
        (6, 2, "forward", 2, [2, 3]),
        (6, 2, "backward", 2, [2, 1]),
        (6, 2, "both", 2, [2, 3, 1]),
        (6, 0, "both", None, [0, 1, 2, 3, 4, 5]),
        (6, 5, "both", 1, [5]),
        (1, 0, "backward", None, [0]),
    ],
)
def test_frame_order(n, start, direction, limit, expected):
    assert frame_order(n, start, direction, limit) == expected


def test_frame_result_checks_shapes():
    r = _result([4, 7])
    assert len(r) == 2 and r.size == (4, 5)
    assert r.obj_ids.dtype == np.int64 and r.scores.dtype == np.float32 and r.masks.dtype == bool
    with pytest.raises(ValueError, match="labels"):
        FrameResult(0, [1, 2], ["a"], [0.1, 0.2], np.zeros((2, 4)), np.zeros((2, 4, 5), bool))
    with pytest.raises(ValueError, match="masks"):
        FrameResult(0, [1], ["a"], [0.1], np.zeros((1, 4)), np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match="repeat"):
        FrameResult(0, [1, 1], ["a", "b"], [0.1, 0.2], np.zeros((2, 4)), np.zeros((2, 4, 5), bool))


def test_select_without_and_merge():
    r = _result([4, 7, 9])
    assert r.without({7}).obj_ids.tolist() == [4, 9]
    assert r.without({7}).labels == ["l4", "l9"]
    merged = FrameResult.merge([_result([9, 2]), _result([5])])
    assert merged.obj_ids.tolist() == [2, 5, 9] and merged.labels == ["l2", "l5", "l9"]
    empty = FrameResult.empty(3, 4, 5)
    assert len(empty) == 0 and empty.masks.shape == (0, 4, 5)


@pytest.mark.parametrize("text", ["", " , ,, ", None, (), ["", " "]])
def test_no_phrase_is_the_one_empty_prompt_sentence(text):
    with pytest.raises(BadRequestError, match=r"^The prompt is empty\. Type one or more phrases separated by commas"):
        phrases_of(text)


def test_phrases_are_parsed_as_parse_prompts_does():
    assert phrases_of(" car,  person ,Car") == parse_prompts(" car,  person ,Car") == ("car", "person")
    assert phrases_of(["car, bus", "tree"]) == ("car", "bus", "tree")
