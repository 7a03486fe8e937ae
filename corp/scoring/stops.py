"""When a greedy row is finished: end-of-sequence token or one of the task's stop strings."""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

# Extra tokens decoded in front of the longest stop string: a stop string of k characters
# spans at most k tokens, and the margin absorbs tokens that decode to nothing (specials)
# or to a partial UTF-8 character at the window's start.
_MARGIN = 8


class StopChecker:
    """Checks rows after each decoding step.

    Only the last few tokens of a row are decoded: a stop string is looked for as soon
    as its last token arrives, so it always lies inside that tail. Decoding the whole row
    every step would cost O(length^2) on long generations. Where decoding stops after a
    stop string does not change the scored text: the scorer cuts every completion at
    its first stop string.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, eos_ids: Sequence[int], stops: Sequence[str]) -> None:
        self.tokenizer = tokenizer
        self.eos = set(int(e) for e in eos_ids if e is not None)
        self.stops = tuple(s for s in stops if s)
        self.window = max((len(s) for s in self.stops), default=0) + _MARGIN

    def finished(self, rows: Sequence[Sequence[int]]) -> list[bool]:
        """For each row of generated token ids: has it produced EOS or completed a stop string?"""
        done = [len(r) > 0 and r[-1] in self.eos for r in rows]
        if not self.stops:
            return done
        pending = [i for i, d in enumerate(done) if not d]
        if pending:
            tails = self.tokenizer.batch_decode([rows[i][-self.window :] for i in pending], skip_special_tokens=True)
            for i, text in zip(pending, tails):
                done[i] = any(s in text for s in self.stops)
        return done
