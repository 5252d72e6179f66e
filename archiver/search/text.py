"""What a searchable word is: one definition for documents and queries, on both databases.

SQLite's FTS5 ``unicode61`` tokenizer and PostgreSQL's text-search parser disagree on
words (PostgreSQL keeps ``resident.bsky.social`` or ``e-mail`` whole, FTS5 splits them;
``unaccent`` folds ``ø`` to ``o``, FTS5 does not; case folding follows the server's
locale). So the words are cut and folded here, once, and each database is handed text it
leaves as it is: runs of letters and decimal digits, case-folded (Unicode ``casefold``),
compatibility-decomposed (NFKD: ``ﬁ`` → ``fi``, full-width → ASCII), without combining
marks (diacritics), and with the letters PostgreSQL's ``unaccent`` folds further than
Unicode does (``ø`` → ``o``, ``æ`` → ``ae``, ``ł`` → ``l``) folded the same way. Everything
else (punctuation, symbols, emoji, spaces) separates words. tests/search/test_text.py
checks, for every code point, that FTS5 (``unicode61 remove_diacritics 2``) and
PostgreSQL (``to_tsvector('simple', unaccent(...))``) keep these words unchanged, which is
what makes the two databases return the same items.
"""

from __future__ import annotations

import re
import unicodedata

#: Longer "words" (encoded blobs, not language) are not indexed: PostgreSQL refuses lexemes
#: over 2,047 bytes, and 255 characters of UTF-8 stay under that.
MAX_WORD = 255

# Letters that PostgreSQL's unaccent (contrib/unaccent/unaccent.rules, PostgreSQL 15)
# folds and Unicode decomposition does not, as (letter, folded) pairs; only letters that
# survive case folding and decomposition are listed, since no other can reach a database.
_UNACCENT_LETTERS = (
    "æae ðd øo þth đd ħh ıi ĸq łl ŋn œoe ŧt ƀb ƃb ƈc ƌd ƒf ƕhv ƙk ƚl ƞn ƣoi ƥp ƫt ƭt ƴy "
    "ƶz ǥg ȡd ȥz ȴl ȵn ȶt ȷj ȸdb ȹqp ȼc ȿs ɀz ɇe ɉj ɍr ɏy ɓb ɕc ɖd ɗd ɛe ɟj ɠg ɡg ɢg ɦh "
    "ɧh ɨi ɪi ɫl ɬl ɭl ɱm ɲn ɳn ɴn ɶoe ɼr ɽr ɾr ʀr ʂs ʈt ʉu ʋv ʏy ʐz ʑz ʙb ʛg ʜh ʝj ʟl "
    "ʠq ʣdz ʥdz ʦts ʪls ʫlz ᴀa ᴁae ᴃb ᴄc ᴅd ᴆd ᴇe ᴊj ᴋk ᴌl ᴍm "
    "ᴏo ᴘp ᴛt ᴜu ᴠv ᴡw ᴢz ᵫue ᵬb ᵭd ᵮf ᵯm ᵰn ᵱp ᵲr ᵳr ᵴs ᵵt ᵶz ᵺth ᵻi ᵽp ᵾu ᶀb ᶁd ᶂf ᶃg "
    "ᶄk ᶅl ᶆm ᶇn ᶈp ᶉr ᶊs ᶌv ᶍx ᶎz ᶏa ᶑd ᶒe ᶓe ᶖi ᶙu ẜs ẝs ỻll ỽv ỿy ⱡl ⱥa ⱦt ⱨh ⱪk ⱬz "
    "ⱱv ⱳw ⱴv ⱸe ⱺo 〇0 ꜰf ꜱs ꜳaa ꜵao ꜷau ꜹav ꜻav ꜽay ꝁk ꝃk ꝅk ꝇl ꝉl ꝋo ꝍo ꝏoo ꝑp ꝓp ꝕp "
    "ꝗq ꝙq ꝟv ꝡvy ꝥth ꝧth ꝱd ꝲl ꝳm ꝴn ꝵr ꝶr ꝷt ꝺd ꝼf ꞇt ꞑn ꞓc ꞡg ꞣk ꞥn ꞧr ꞩs"
)
_UNACCENT = {pair[0]: pair[1:] for pair in _UNACCENT_LETTERS.split()}
# Modifier letters unaccent turns into punctuation (ʼ → '): they separate words.
_UNACCENT_PUNCTUATION = frozenset("ʹʺʻʼʽˆˈˋː")
# Letters in today's Unicode that FTS5's tables (Unicode 6.1) still call combining marks,
# so FTS5 would split words at them: dropped like every other mark.
_FTS5_MARKS = frozenset(
    [chr(c) for c in range(0x19B0, 0x19C1)] + ["\u19c8", "\u19c9", "\u1cf2", "\u1cf3"]
)
_WORD_CATEGORIES = frozenset({"Lu", "Ll", "Lt", "Lm", "Lo", "Nd"})
# PostgreSQL's parser reads "8e9" as a number in scientific notation and ends the word
# there, so "8e9x" is two words for it: cut them the same way for FTS5.
_SCIENTIFIC = re.compile(r"[0-9]+e[0-9]+(?=[^0-9])")


def _fold_char(char: str) -> str:
    """What one character of the input becomes: part of a word, nothing, or a space."""
    out = []
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", char).casefold())
    for c in decomposed:
        c = _UNACCENT.get(c, c)
        for d in c:
            category = unicodedata.category(d)
            if category.startswith("M") or d in _FTS5_MARKS:
                continue  # diacritics are dropped: "Café" is "cafe"
            if category in _WORD_CATEGORIES and d not in _UNACCENT_PUNCTUATION:
                out.append(d)
            else:
                out.append(" ")
    return "".join(out)


class _FoldTable(dict[int, str]):
    """``str.translate`` table computed per code point on first sight, then cached."""

    def __missing__(self, code: int) -> str:
        folded = _fold_char(chr(code))
        self[code] = folded
        return folded


_TABLE = _FoldTable()


def _cut(word: str) -> list[str]:
    if word[0] in "0123456789" and (number := _SCIENTIFIC.match(word)) is not None:
        return [number.group(), word[number.end() :]]
    return [word]


def words(text: str | None, *, keep_long: bool = False) -> list[str]:
    """The searchable words of ``text``, in order; those longer than :data:`MAX_WORD` are
    left out unless ``keep_long``."""
    if not text:
        return []
    return [
        piece
        for word in text.translate(_TABLE).split()
        for piece in _cut(word)
        if keep_long or len(piece) <= MAX_WORD
    ]


def normalized(text: str | None) -> str:
    """``text`` as the databases index it: its words, separated by single spaces."""
    return " ".join(words(text))
