"""The characters some tokenizer, client or terminal treats as the end of a line (Python's
`str.splitlines` set: LF, CR, VT, FF, the file/group/record separators, NEL, U+2028, U+2029)."""

from __future__ import annotations

LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
# The same set as the body of a regex character class, for patterns that split or anchor on lines.
LINE_BREAK_CLASS = r"\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029"
