"""Regenerate the sample texts in examples/data/ (deterministic; already committed).

The texts are generated, not copied: English function words plus each book's own
vocabulary, drawn with Zipf-like frequencies so that word counts look like real prose.

    python examples/make_sample_texts.py
"""

from __future__ import annotations

import random
from pathlib import Path

COMMON = (
    "the of and to a in that it was he i his you with for had as her she but not at on "
    "is be by all my which from have they this were so me one we him there said no been "
    "if would when their what them could an or out up more into then are do like over "
    "little upon some very now before only any time"
).split()

BOOKS = {
    "a-winter-voyage": "ship ice captain north sea wind sail frozen crew harbour storm compass "
    "whale night star rope deck mast journey cold shore lantern map voyage",
    "letters-from-the-north": "letter sister write dear house snow village winter field road "
    "mother church candle news spring bread letters morning walk garden",
    "the-clockmakers-daughter": "clock gear spring hour workshop brass hand tick tower "
    "daughter father key minute bell chime lens watch silver mechanism",
    "the-lighthouse-keeper": "light lamp keeper rock wave tower beacon fog gull island "
    "signal oil glass shore tide boat keeper's storm cliff dawn",
}


def write_book(path: Path, theme: str, seed: int, paragraphs: int = 900) -> None:
    rng = random.Random(seed)
    vocabulary = COMMON + theme.split()
    weights = [1.0 / (rank + 1) ** 0.9 for rank in range(len(vocabulary))]
    rng.shuffle(weights)  # each book ranks its words differently
    lines = []
    for _ in range(paragraphs):
        for _ in range(rng.randint(2, 6)):
            words = rng.choices(vocabulary, weights, k=rng.randint(6, 16))
            lines.append(" ".join(words).capitalize() + ".")
        lines.append("")
    path.write_text("\n".join(lines))


def main() -> None:
    data = Path(__file__).parent / "data"
    data.mkdir(exist_ok=True)
    for seed, (name, theme) in enumerate(sorted(BOOKS.items())):
        write_book(data / f"{name}.txt", theme, seed)


if __name__ == "__main__":
    main()
