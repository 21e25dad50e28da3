"""Per-request streams out of a batch: stop strings split across tokens, held-back text, EOS, budgets."""

import torch

from xllm.serving.streams import BatchStreamer, ChoiceStream, RowsFinished

WORDS = {1: "the", 2: "red", 3: "square", 4: "is", 5: "small", 6: "\ufffd", 7: "é", 9: "</s>"}


def decode(tokens: list[int]) -> str:
    """Words joined by spaces; token 6 then 7 stands for a character in two pieces."""
    text = " ".join(WORDS[t] for t in tokens if t != 9)
    return text.replace("\ufffd é", "é")


def stream(**options) -> tuple[ChoiceStream, list[dict]]:
    events = []
    options.setdefault("max_tokens", 10)
    return ChoiceStream(0, decode, events.append, eos_token_ids={9}, **options), events


def deltas(events: list[dict]) -> str:
    return "".join(event.get("delta", "") for event in events)


def test_the_deltas_add_up_to_the_answer_and_eos_ends_it_with_stop():
    row, events = stream()
    for token in (1, 2, 3, 9, 4):
        row.add(token)
    assert deltas(events) == row.text == "the red square"
    assert events[-1] == {"choice": 0, "finish_reason": "stop", "completion_tokens": 3}


def test_a_stop_string_split_across_tokens_is_held_back_then_cut():
    row, events = stream(stop=("red sq",))
    row.add(1)
    row.add(2)
    assert deltas(events) == "the "  # "red" could begin the stop string: held back
    row.add(3)
    assert deltas(events) == row.text == "the "
    assert events[-1]["finish_reason"] == "stop"


def test_text_held_back_for_a_stop_string_that_does_not_come_is_sent():
    row, events = stream(stop=("red sq",))
    for token in (1, 2, 4):
        row.add(token)
    assert deltas(events) == "the red is"


def test_an_unfinished_character_is_not_sent_until_it_is_whole():
    row, events = stream()
    row.add(1)
    row.add(6)
    assert "\ufffd" not in deltas(events)
    row.add(7)
    assert deltas(events) == row.text == "the é"


def test_max_tokens_ends_a_choice_with_length_and_later_tokens_are_ignored():
    row, events = stream(max_tokens=2)
    for token in (1, 2, 3, 4):
        row.add(token)
    assert row.text == "the red" and row.finish_reason == "length"
    assert [event.get("finish_reason") for event in events].count("length") == 1


def test_rows_of_a_batch_get_their_own_tokens_and_stop_one_by_one():
    gone = {"client": False}
    first, first_events = stream(max_tokens=1)
    second, second_events = stream()
    third, third_events = stream(cancelled=lambda: gone["client"])
    streamer, finished = BatchStreamer([first, second, third]), RowsFinished([first, second, third])
    streamer.put(torch.tensor([[1, 1], [1, 1], [1, 1]]))  # the prompt, ignored
    streamer.put(torch.tensor([2, 3, 4]))
    gone["client"] = True
    streamer.put(torch.tensor([5, 9, 5]))
    assert finished(torch.zeros(3, 1, dtype=torch.long), None).tolist() == [True, True, True]
    assert (first.text, second.text, third.text) == ("red", "square", "is")
    assert (first.finish_reason, second.finish_reason, third.finish_reason) == ("length", "stop", None)
    streamer.end()
    assert third.finish_reason == "length" and deltas(third_events) == "is"
