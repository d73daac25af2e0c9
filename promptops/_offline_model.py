"""`OfflineModel`: a deterministic, offline stand-in for an LLM that really reads its prompt.

Public as `promptops.testing.OfflineModel`; it lives in its own module because it is most of the testing helpers'
code and shares nothing with the span capture (issue 16).

Everything here is stdlib only: `promptops.testing` is imported by users' test suites and by the pytest plugin's
fixtures, so it must stay as light as `import promptops` (tests/unit/test_import_cost.py).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import math
import random
import re
import secrets
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, TypeVar

__all__ = ["OfflineModel", "PromptInput", "PromptReading"]

Task = Literal["summary", "keywords", "sentiment", "category"]
OutputFormat = Literal["text", "json", "bullets", "headline"]
Tone = Literal["neutral", "friendly", "formal"]
Case = Literal["as-is", "upper", "lower", "title"]
_Choice = TypeVar("_Choice", bound=str)

_NUMBERS = {
    "one": 1, "single": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "twenty-five": 25,
    "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
    "hundred": 100, "a": 1, "an": 1,
}  # fmt: skip
# Longest first, so "twenty-five" is not read as "twenty"; "a"/"an" count only for sentences ("a sentence").
_NUM = r"(\d+|" + "|".join(sorted((w for w in _NUMBERS if w not in ("a", "an")), key=len, reverse=True)) + ")"

# Where the content is: enclosed (anything may follow it), or after a marker line (it runs to the end).
_CONTENT_TAGS = "text|ticket|input|review|article|document|content|email|message"
_CONTENT_MARKERS = rf"(?:{_CONTENT_TAGS}|passage)[ \t]*:[ \t]*"
_ENCLOSED = re.compile(
    rf'"""(?P<quoted>.*?)"""|<(?P<tag>{_CONTENT_TAGS})>'
    r"(?P<tagged>(?:(?!<(?P=tag)>).)*?)</(?P=tag)>",  # the innermost: "the <text> below: <text>...</text>"
    re.S | re.I,
)
_MARKER = re.compile(rf"^[ \t]*{_CONTENT_MARKERS}", re.I | re.M)
# The same word inside a line ("Summarize in 20 words. Text: ..."), when no line starts with one.
_INLINE_MARKER = re.compile(rf"\b{_CONTENT_MARKERS}", re.I)
_FIELD = re.compile(
    r"^[ \t]*(?P<key>customer(?: name)?|name|product|channel)[ \t]*:[ \t]*(?P<value>.*?)[ \t]*$", re.I | re.M
)

# Instructions (matched on the lower-cased instruction text).
_WORD_LIMIT = re.compile(rf"(?:\b(under|fewer than|less than|below)\s+)?\b{_NUM}[\s-]+words?\b")
_SENTENCES = re.compile(
    rf"(?:\b{_NUM}|\ba(?=[\s-]))(?:[\s-]+(?:very|short|brief|concise|simple|clear|plain|single|complete))*"
    r"[\s-]+(?:sentences?|lines?)\b"
)
_BULLET_COUNT = re.compile(rf"\b{_NUM}[\s-]+(?:short\s+)?(?:bullet(?:\s+point)?s?|points)\b")
_VERY_SHORT = re.compile(r"\b(?:very|extremely|super|ultra)[\s-]+(?:short|brief|concise|terse)\b")
_BULLETS = re.compile(r"\bbullet|\bbulleted\b|\bas a list\b|\blist of (?:the )?(?:key |main )?points\b")
_HEADLINE = re.compile(r"\bheadline\b|\bas a title\b")
_JSON = re.compile(r"\bjson\b")
_JSON_KEYS = re.compile(r"\b(?:keys?|fields?|properties|attributes)\b[^.\n]*")
_KEY_NAMES = ("summary", "customer", "product", "category", "sentiment", "priority", "keywords")
_UPPER = re.compile(r"\b(?:upper[\s-]?case|all caps|all capitals|capital letters|caps lock|in caps)\b")
_LOWER = re.compile(r"\blower[\s-]?case\b")
_TITLE = re.compile(r"\btitle[\s-]?case\b")
_FRIENDLY = re.compile(r"\b(?:friendly|casual|informal|warm|conversational|chatty|upbeat)\b")
_FORMAL = re.compile(r"\b(?:formal|professional|businesslike)\b")
# "no"/"not" alone are too common ("in no more than 40 words") to negate a mention further on.
_NEGATION = r"\b(?:without|omit|omitting|leave out|leaving out|exclude|excluding|never|don't|do not|drop|skip)\b"
_NAME = re.compile(r"\bnames?\b")
_NO_NAME = re.compile(_NEGATION + r"[^.;\n]{0,40}\bnames?\b|\bno (?:customer )?names\b")
_PRODUCT = re.compile(r"\b(?:mention|include|name|state|add|note)\b[^.;\n]{0,30}\bproduct\b")
_NO_PRODUCT = re.compile(_NEGATION + r"[^.;\n]{0,40}\bproduct\b")
_OMIT_DETAILS = re.compile(
    r"\b(?:leave out|leaving out|omit|omitting|skip|skipping|drop|dropping|ignore|ignoring|without|no need for)\b"
    r"[^.;\n]{0,40}\b(?:details?|specifics|numbers|figures|particulars)\b"
    r"|\b(?:just|only) the (?:gist|main point|essence)\b"
)
_SUMMARY_TASK = re.compile(r"summar|tl;?dr|\bheadline\b|\bbullet|\brecap\b|\bgist\b|\bcondense\b|\bshorten\b")
_KEYWORDS_TASK = re.compile(r"\bkey ?words?\b|\bkey phrases\b|\btags\b")
_KEYWORD_COUNT = re.compile(rf"\b{_NUM}[\s-]+(?:key ?words|tags|key phrases)\b")
_SENTIMENT_TASK = re.compile(r"\bsentiment\b")
_CATEGORY_TASK = re.compile(r"\bcategor(?:y|ies|ise|ize)\b|\btopic\b")

# Content analysis.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Za-z0-9])|\s*\n+\s*")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr st no vs etc e.g i.e approx jr sr inc ltd co corp dept est fig min max nr mt ave".split()
)
_TOKEN = re.compile(r"[a-z0-9]+(?:['’][a-z]+)*")
_CHAT_GREETING = re.compile(
    r"^(?:hi|hello|hey)\s+(?=(?:where|what|when|why|how|can|could|is|are|do|does|my|i|i'm)\b)", re.I
)
_GREETING = re.compile(
    r"^(?:hi|hello|hey|dear|greetings|good (?:morning|afternoon|evening)|to whom)\b[^,.!?:]{0,30}[,!:.]\s*", re.I
)
_SIGN_OFF = re.compile(
    r"^(?:thanks|thank you|many thanks|thanks again|cheers|best|regards|kind regards|best regards|warm regards|"
    r"sincerely|br|ta|thx|ty)\b[^.!?]{0,40}[.!]?$",
    re.I,
)
_STOPWORDS = frozenset(
    """a about above after again against all also am an and any are aren't as at be because been before being
    below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during
    each few for from further had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers
    herself him himself his how how's i i'd i'll i'm i've if in into is isn't it it's its itself just let's me
    more most mustn't my myself no nor not now of off on once only or other ought our ours ourselves out over own
    same shan't she she'd she'll she's should shouldn't so some such than that that's the their theirs them
    themselves then there there's these they they'd they'll they're they've this those through to too under
    until up very was wasn't we we'd we'll we're we've were weren't what what's when when's where where's which
    while who who's whom why why's will with won't would wouldn't you you'd you'll you're you've your yours
    yourself yourselves hi hello hey thanks thank please really also get got still one like even since yet
    already ever much many lot lots way thing things something anything know sure okay ok well back able
    would've could've since via per says said using asked tell told""".split()
)
_POSITIVE = frozenset(
    """love loved loving great excellent amazing awesome fantastic perfect perfectly happy glad pleased wonderful
    brilliant smooth helpful impressed impressive recommend best superb delighted fast quick easy nice
    appreciate appreciated kudos lovely solid reliable favourite favorite enjoy enjoying enjoyed""".split()
)
_NEGATIVE = frozenset(
    """angry annoyed annoying frustrated frustrating disappointed disappointing terrible awful horrible worst bad
    broken broke crash crashes crashed crashing error errors bug bugs fail fails failed failing failure wrong
    missing damaged late delay delayed lost locked unacceptable useless refund charged twice never cannot can't
    won't doesn't didn't stuck slow problem problems issue issues complaint ridiculous scam cancel cancelled
    defective faulty leaking leaks dead unusable outage down incorrect overcharged stopped ruined""".split()
)
_CATEGORIES: tuple[tuple[str, frozenset[str]], ...] = (
    ("refund", frozenset("refund refunded refunds reimburse reimbursement money return returned returning".split())),
    ("billing", frozenset("charge charged charges billing billed bill invoice invoices payment paid card "
                          "subscription price pricing plan overcharged vat receipt".split())),
    ("shipping", frozenset("shipping shipped delivery delivered deliver package parcel courier tracking "
                           "arrive arrived dispatch dispatched shipment warehouse postage".split())),
    ("account", frozenset("account login log password locked lockout sign reset verification 2fa email "
                          "username authenticator code".split())),
    ("bug", frozenset("bug crash crashes crashed error freezes freeze frozen broken glitch fails failed "
                      "sync syncing update firmware disconnects reboot".split())),
    ("feature request", frozenset("feature features suggestion suggest wish option request roadmap adding "
                                  "consider integration".split())),
    ("praise", frozenset("love great excellent amazing awesome fantastic thank kudos impressed "
                         "recommend".split())),
)  # fmt: skip
_URGENT = frozenset("urgent urgently asap immediately unacceptable lawyer chargeback today now furious".split())
_SYNONYMS = {
    "bought": "purchased", "purchased": "bought", "problem": "issue", "issue": "problem", "problems": "issues",
    "issues": "problems", "received": "got", "fix": "resolve", "fixed": "resolved", "quickly": "promptly",
    "help": "assistance", "broken": "faulty", "faulty": "broken", "charged": "billed", "billed": "charged",
    "wrong": "incorrect", "incorrect": "wrong", "started": "began", "tried": "attempted",
    "several": "multiple", "multiple": "several", "annoying": "frustrating", "frustrating": "annoying",
    "happy": "pleased", "great": "excellent", "terrible": "awful", "awful": "terrible", "seems": "appears",
    "buy": "purchase", "fast": "quick", "big": "large", "stopped": "quit", "contacted": "reached",
    "order": "purchase",
}  # fmt: skip
_CONTRACT = (
    (r"\bcannot\b", "can't"), (r"\bwill not\b", "won't"), (r"\bdo not\b", "don't"), (r"\bdoes not\b", "doesn't"),
    (r"\bdid not\b", "didn't"), (r"\bis not\b", "isn't"), (r"\bare not\b", "aren't"), (r"\bwas not\b", "wasn't"),
    (r"\bwere not\b", "weren't"), (r"\bhave not\b", "haven't"), (r"\bhas not\b", "hasn't"),
    (r"\bI am\b", "I'm"), (r"\bI will\b", "I'll"), (r"\bI would\b", "I'd"),
    (r"\bit is\b", "it's"), (r"\bthat is\b", "that's"), (r"\bwe are\b", "we're"), (r"\byou are\b", "you're"),
    (r"\bthey are\b", "they're"),
)  # fmt: skip
_EXPAND = (
    (r"\bcan['’]t\b", "cannot"), (r"\bwon['’]t\b", "will not"), (r"\b(\w+)n['’]t\b", r"\1 not"),
    (r"\bI['’]m\b", "I am"), (r"\b(\w+)['’]ve\b", r"\1 have"), (r"\b(\w+)['’]ll\b", r"\1 will"),
    (r"\bI['’]d\b", "I would"), (r"\b(it|that|there|what)['’]s\b", r"\1 is"), (r"\b(\w+)['’]re\b", r"\1 are"),
)  # fmt: skip
_DETAIL = re.compile(
    r"(?:\s+(?:on|at|for|from|since|by|of|order|number|no\.|invoice|ticket|about|around|to|is|was|the|a|"
    r"jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:tember)?|oct(?:ober)?|"
    r"nov(?:ember)?|dec(?:ember)?|monday|tuesday|wednesday|thursday|friday|saturday|sunday))*"
    r"(?:^|\s+)[#$€£]?[^\s]*\d[^\s]*|\s*\([^)]*\)|\s*\S+@\S+|\s*https?://\S+",
    re.I,
)
_SMALL_WORDS = frozenset("a an the and or but for nor of to in on at by with as vs".split())
PromptInput = str | Sequence[Mapping[str, Any]]
_OPENERS: dict[str, tuple[str, ...]] = {"friendly": ("Hi team,", "Hey team,"), "formal": (), "neutral": ()}


@dataclasses.dataclass(frozen=True)
class PromptReading:
    """What `OfflineModel` understood from a prompt: its content and the instructions it will honour.

    Attributes:
        content: The text to work on (see `OfflineModel` for where it is looked for).
        instructions: Everything else, with the `Customer:`/`Product:`/`Channel:` field lines taken out.
        customer: The value of a `Customer:` (or `Customer name:`, `Name:`) line, if any.
        product: The value of a `Product:` line, if any.
        task: `"summary"`, or `"keywords"`, `"sentiment"`, `"category"` when only that was asked for.
        output_format: `"text"`, `"json"`, `"bullets"` or `"headline"`.
        max_words: The word limit, if one was given (`"under 20 words"` is 19).
        max_sentences: The number of sentences (or bullet points) asked for, if any.
        case: `"upper"`, `"lower"`, `"title"` or `"as-is"`.
        tone: `"friendly"` (contractions, a greeting), `"formal"` (no contractions) or `"neutral"`.
        include_name: The customer's name is to be mentioned.
        include_product: The product is to be mentioned.
        omit_details: Numbers, dates, ids and subordinate clauses are to be left out.
        json_keys: The keys of the JSON object, when `output_format` is `"json"`.
        keyword_count: How many keywords to extract.
    """

    content: str
    instructions: str = ""
    customer: str | None = None
    product: str | None = None
    task: Task = "summary"
    output_format: OutputFormat = "text"
    max_words: int | None = None
    max_sentences: int | None = None
    case: Case = "as-is"
    tone: Tone = "neutral"
    include_name: bool = False
    include_product: bool = False
    omit_details: bool = False
    json_keys: tuple[str, ...] = ("summary",)
    keyword_count: int = 5


class OfflineModel:
    """A deterministic, offline stand-in for an LLM that really reads its prompt: for demos, tests and benchmarks.

    It separates the instructions of a prompt from its content and answers with an extractive summary of the
    content (sentences scored by content-word frequency, the best kept in their original order) that honours
    the instructions it recognises, so a prompt change changes the output the way it would with a real model.

    Where the content is, first match wins:

    1. between triple double quotes, or inside a tag such as `<text>...</text>` (also `ticket`, `input`,
       `review`, `article`, `document`, `content`, `email`, `message`): instructions may follow it;
    2. after a marker line `Text:` (also `Ticket:`, `Input:`, `Review:`, `Article:`, `Document:`, `Content:`,
       `Email:`, `Message:`, `Passage:`), on the same line or the next ones, to the end of the prompt; when no
       line starts with one, after the first such word inside a line (`Summarize in 20 words. Text: ...`);
    3. otherwise the last paragraph (for chat messages: the last user message); the rest is instructions.

    Lines `Customer: ...`, `Product: ...` and `Channel: ...` among the instructions are fields, not
    instructions. Chat input is a list of `{"role", "content"}` messages, as `Prompt.format()` returns for chat
    prompts; assistant messages are ignored.

    Instructions it honours (case-insensitive): word limits (`"in at most 30 words"`, `"under 20 words"`,
    `"no more than 25 words"`, `"a 15-word summary"`; counted as whitespace-separated words of the text, of
    the `summary` value in JSON, without bullet markers), sentence counts (`"in one sentence"`,
    `"in 2 sentences"`, `"one very short sentence"`), `"very short"` (at most 12 words), formats (`"as JSON"`:
    `{"summary": ...}`, or the keys listed after `"keys"`/`"fields"` among summary, customer, product,
    category, sentiment, priority, keywords; `"bullet points"`: `- ` lines; `"as a headline"`: title case,
    at most 10 words, no final period), case (`"in uppercase"`, `"lowercase"`, `"title case"`), tone
    (`"friendly"`/`"casual"`: contractions and a greeting; `"formal"`: no contractions), `"include the
    customer's name"`, `"mention the product"`, `"leave out the details"` (numbers, dates, ids, asides), and
    tasks other than a summary: `"extract 5 keywords"`, `"classify the sentiment"` (positive, negative or
    neutral), `"categorize"` (refund, billing, shipping, account, bug, feature request, praise, other).
    Anything else (`"translate into French"`, a persona) is ignored, as a weak model would.

    Nondeterminism is seeded: with probability `variation` an output takes a near-equivalent alternative (the
    next-best sentence instead of one, a synonym, two sentences or bullet points swapped, another greeting).
    The random draws of the k-th call with a given prompt text derive from `(seed, prompt text, k)`, so a run
    is reproducible whatever the order in which threads make their calls.

    ```python
    from promptops.testing import OfflineModel

    model = OfflineModel(seed=1)
    answer = model([
        {"role": "system", "content": "Summarize the customer's message in at most 12 words, in uppercase."},
        {"role": "user", "content": "My parcel arrived two weeks late. The box was crushed and the lamp is broken."},
    ])
    assert answer == answer.upper() and len(answer.split()) <= 12
    ```

    Args:
        seed: Seed of the nondeterminism; `None` draws a fresh one, so each model instance differs.
        variation: Probability, in [0, 1], that an output is a near-equivalent alternative; 0 is fully
            deterministic (the same prompt always gives the same output).
        latency_ms: Time each call sleeps, to simulate a provider.
        jitter: Relative spread of the latency, in [0, 1]: each call sleeps `latency_ms * (1 ± jitter)`, drawn
            from the seeded generator.

    Raises:
        ValueError: `variation` or `jitter` is outside [0, 1], or `latency_ms` is negative.
    """

    def __init__(
        self, seed: int | None = 0, variation: float = 0.0, latency_ms: float = 0.0, *, jitter: float = 0.0
    ) -> None:
        """Create a model; see the class documentation for the arguments."""
        if not 0.0 <= variation <= 1.0:
            raise ValueError(f"OfflineModel(variation={variation!r}): a probability between 0 and 1 is needed")
        if not 0.0 <= jitter <= 1.0:
            raise ValueError(f"OfflineModel(jitter={jitter!r}): a fraction between 0 and 1 is needed")
        if latency_ms < 0:
            raise ValueError(f"OfflineModel(latency_ms={latency_ms!r}): latency cannot be negative")
        self.variation = variation
        self.latency_ms = latency_ms
        self.jitter = jitter
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._calls = 0
        self.seed: int = seed if seed is not None else secrets.randbits(64)

    def __repr__(self) -> str:
        """`OfflineModel(seed=..., variation=..., latency_ms=...)`."""
        return f"OfflineModel(seed={self.seed!r}, variation={self.variation!r}, latency_ms={self.latency_ms!r})"

    @property
    def calls(self) -> int:
        """How many calls this model has answered (or is answering)."""
        return self._calls

    def reset(self, seed: int | None = None) -> None:
        """Forget the per-prompt call counts, as in a new process; optionally change the seed.

        Args:
            seed: A new seed; `None` keeps the current one.
        """
        with self._lock:
            self._counts.clear()
            self._calls = 0
            if seed is not None:
                self.seed = seed

    @staticmethod
    def read(prompt: PromptInput) -> PromptReading:
        """What the model understands from `prompt`: its content and the instructions it will honour.

        Args:
            prompt: The prompt text, or a list of chat messages.

        Returns:
            The reading; handy to see why a prompt produces the output it does.
        """
        return _read(prompt)

    def __call__(self, prompt: PromptInput) -> str:
        """Answer `prompt` (a text, or a list of `{"role", "content"}` chat messages), sleeping `latency_ms` first.

        Args:
            prompt: The formatted prompt, e.g. what `Prompt.format()` returns.

        Returns:
            The model's answer.
        """
        rng, delay = self._draw(prompt)
        if delay > 0:
            time.sleep(delay)
        return _respond(_read(prompt), rng, self.variation)

    def invoke(self, prompt: PromptInput) -> str:
        """The same as calling the model (the name LangChain-style code expects).

        Args:
            prompt: The formatted prompt.

        Returns:
            The model's answer.
        """
        return self(prompt)

    async def ainvoke(self, prompt: PromptInput) -> str:
        """Answer `prompt` from async code: the latency is an `asyncio.sleep`, so other tasks run meanwhile.

        Args:
            prompt: The formatted prompt.

        Returns:
            The model's answer, the same as a synchronous call in the same position would give.
        """
        import asyncio

        rng, delay = self._draw(prompt)
        if delay > 0:
            await asyncio.sleep(delay)
        return _respond(_read(prompt), rng, self.variation)

    def _draw(self, prompt: PromptInput) -> tuple[random.Random, float]:
        # One generator per (seed, prompt text, k-th call with that text): counting under the lock is all that
        # is shared, so the k-th answer to a prompt is the same whichever thread gets to make the k-th call.
        digest = hashlib.sha256(_canonical(prompt).encode("utf-8", "surrogatepass")).hexdigest()
        with self._lock:
            k = self._counts.get(digest, 0)
            self._counts[digest] = k + 1
            self._calls += 1
            seed = self.seed
        rng = random.Random(f"{seed}:{digest}:{k}")
        delay = 0.0
        if self.latency_ms > 0:
            spread = random.Random(f"{seed}:{digest}:{k}:latency").uniform(-self.jitter, self.jitter)
            delay = self.latency_ms * (1.0 + spread) / 1000.0
        return rng, delay


def _canonical(prompt: PromptInput) -> str:
    if isinstance(prompt, str):
        return prompt
    return json.dumps([[str(m.get("role", "")), str(m.get("content", ""))] for m in prompt], ensure_ascii=False)


def _split_content(text: str, *, whole_if_unmarked: bool) -> tuple[str, str]:
    """(instructions, content) of one text, by the conventions in OfflineModel's docstring."""
    enclosed = _ENCLOSED.search(text)
    if enclosed:
        content = enclosed.group("quoted") if enclosed.group("quoted") is not None else enclosed.group("tagged")
        return text[: enclosed.start()] + "\n" + text[enclosed.end() :], content
    marker = _MARKER.search(text) or _INLINE_MARKER.search(text)
    if marker:
        return text[: marker.start()], text[marker.end() :]
    if whole_if_unmarked:
        return "", text
    paragraphs = re.split(r"\n[ \t]*\n", text.strip())
    if len(paragraphs) > 1:
        return "\n\n".join(paragraphs[:-1]), paragraphs[-1]
    return "", text


def _number(word: str) -> int:
    return int(word) if word.isdigit() else _NUMBERS[word]


def _read(prompt: PromptInput) -> PromptReading:
    if isinstance(prompt, str):
        instructions, content = _split_content(prompt, whole_if_unmarked=False)
    else:
        messages = [(str(m.get("role", "user")), str(m.get("content", ""))) for m in prompt]
        user = [i for i, (role, _) in enumerate(messages) if role in ("user", "human")]
        last = user[-1] if user else len(messages) - 1
        if last < 0:
            instructions, content = "", ""
        else:
            own, content = _split_content(messages[last][1], whole_if_unmarked=True)
            others = [text for i, (role, text) in enumerate(messages) if i != last and role not in ("assistant", "ai")]
            instructions = "\n\n".join([*others, own])
    fields = {m.group("key").lower().split()[0]: m.group("value") for m in _FIELD.finditer(instructions)}
    instructions = _FIELD.sub("", instructions).strip()
    customer = fields.get("customer") or fields.get("name") or None
    product = fields.get("product") or None
    lowered = instructions.lower().replace("’", "'")
    return _understand(content.strip(), instructions, lowered, customer, product)


def _first(text: str, rules: Sequence[tuple[re.Pattern[str], _Choice]], default: _Choice) -> _Choice:
    """The choice of the first rule whose pattern occurs in `text`, else `default`."""
    return next((choice for pattern, choice in rules if pattern.search(text)), default)


def _smallest(counts: Iterable[int]) -> int | None:
    """The tightest of the positive limits asked for (`None` when none was)."""
    return min((count for count in counts if count > 0), default=None)


def _asked(value: str | None, wanted: re.Pattern[str], unwanted: re.Pattern[str], text: str) -> bool:
    """A field is to be mentioned: it is known, asked for, and not asked to be left out."""
    return bool(value) and bool(wanted.search(text)) and not unwanted.search(text)


_TASKS: tuple[tuple[re.Pattern[str], Task], ...] = (
    (_SUMMARY_TASK, "summary"),
    (_KEYWORDS_TASK, "keywords"),
    (_SENTIMENT_TASK, "sentiment"),
    (_CATEGORY_TASK, "category"),
)
_FORMATS: tuple[tuple[re.Pattern[str], OutputFormat], ...] = (
    (_JSON, "json"),
    (_BULLETS, "bullets"),
    (_HEADLINE, "headline"),
)
_CASES: tuple[tuple[re.Pattern[str], Case], ...] = ((_UPPER, "upper"), (_LOWER, "lower"), (_TITLE, "title"))
_TONES: tuple[tuple[re.Pattern[str], Tone], ...] = ((_FRIENDLY, "friendly"), (_FORMAL, "formal"))


def _understand(content: str, instructions: str, text: str, customer: str | None, product: str | None) -> PromptReading:
    max_words = _smallest(
        _number(match.group(2)) - (1 if match.group(1) else 0) for match in _WORD_LIMIT.finditer(text)
    )
    if max_words is None and _VERY_SHORT.search(text):
        max_words = 12
    max_sentences = _smallest(
        _number(match.group(1)) if match.group(1) else 1
        for match in [*_SENTENCES.finditer(text), *_BULLET_COUNT.finditer(text)]
    )
    output_format: OutputFormat = _first(text, _FORMATS, "text")
    # A summary is the task unless another one alone was asked for; bullet points and headlines are summaries.
    requested: Task = _first(text, _TASKS, "summary")
    task: Task = "summary" if output_format in ("bullets", "headline") else requested
    count = _KEYWORD_COUNT.search(text)
    json_keys: tuple[str, ...] = (requested,)
    listed = _JSON_KEYS.search(text) if output_format == "json" else None
    if listed:
        found = sorted((listed.group(0).find(key), key) for key in _KEY_NAMES if key in listed.group(0))
        json_keys = tuple(key for _, key in found) or json_keys
    case: Case = _first(text, _CASES, "as-is")
    tone: Tone = _first(text, _TONES, "neutral")
    include_name = _asked(customer, _NAME, _NO_NAME, text)
    include_product = _asked(product, _PRODUCT, _NO_PRODUCT, text)
    if output_format == "json" and include_name and "customer" not in json_keys:
        json_keys = ("customer", *json_keys)
    return PromptReading(
        content=content,
        instructions=instructions,
        customer=customer,
        product=product,
        task=task,
        output_format=output_format,
        max_words=max_words,
        max_sentences=max_sentences,
        case=case,
        tone=tone,
        include_name=include_name,
        include_product=include_product,
        omit_details=bool(_OMIT_DETAILS.search(text)),
        json_keys=json_keys,
        keyword_count=_number(count.group(1)) if count else 5,
    )


# ---------------------------------------------------------------------------------------------- content analysis


def _sentences(content: str) -> list[str]:
    pieces: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(content):
        before = content[start : match.start()].rstrip()
        last_word = before.rsplit(None, 1)[-1].lower().rstrip(".") if before.split() else ""
        if "\n" not in match.group(0) and last_word in _ABBREVIATIONS:
            continue  # "Dr. Chen", "e.g. the app": not a sentence end
        pieces.append(content[start : match.start()])
        start = match.end()
    pieces.append(content[start:])
    out: list[str] = []
    for piece in pieces:
        sentence = " ".join(piece.split()).lstrip("-*• ").strip()
        sentence = _CHAT_GREETING.sub("", _GREETING.sub("", sentence)).strip()
        if not sentence or _SIGN_OFF.match(sentence) or len(sentence.split()) < 2:
            continue  # greetings and sign-offs are not content
        sentence = sentence[0].upper() + sentence[1:]
        if sentence[-1] not in ".!?":
            sentence = sentence.rstrip(",;:-") + "."
        out.append(sentence)
    return out


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower().replace("’", "'"))


def _content_words(text: str) -> list[str]:
    words = [token.removesuffix("'s") for token in _tokens(text)]
    return [word for word in words if word not in _STOPWORDS and (len(word) > 2 or word.isdigit())]


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


def _ranking(sentences: Sequence[str]) -> list[int]:
    """Sentence indices, best first: content-word frequency, a bonus for the opening and for specifics."""
    words = [[_stem(word) for word in _content_words(sentence)] for sentence in sentences]
    freq = collections.Counter(word for sentence in words for word in sentence)
    top = max(freq.values(), default=1)
    scores: list[float] = []
    for index, (sentence, sentence_words) in enumerate(zip(sentences, words)):
        unique = set(sentence_words)
        score = sum(freq[word] / top for word in unique) / math.sqrt(len(unique)) if unique else 0.0
        if index == 0:
            score *= 1.3  # tickets state their problem first
        if any(char.isdigit() for char in sentence):
            score *= 1.1  # order numbers, amounts and dates are what an agent needs
        scores.append(score)
    return sorted(range(len(sentences)), key=lambda index: (-scores[index], index))


def _keywords(content: str, count: int) -> list[str]:
    words = [word for word in _content_words(content) if not any(char.isdigit() for char in word) and len(word) > 3]
    freq = collections.Counter(words)
    first = {word: index for index, word in reversed(list(enumerate(words)))}
    return sorted(freq, key=lambda word: (-freq[word], first[word]))[:count]


def _sentiment_score(content: str) -> int:
    words = _tokens(content)
    return sum(word in _POSITIVE for word in words) - sum(word in _NEGATIVE for word in words)


def _sentiment(score: int) -> str:
    return "positive" if score > 0 else "negative" if score < 0 else "neutral"


def _categories(content: str) -> list[tuple[int, str]]:
    words = collections.Counter(_tokens(content))
    hits = [(sum(words[word] for word in vocabulary), name) for name, vocabulary in _CATEGORIES]
    return sorted([hit for hit in hits if hit[0] > 0], key=lambda hit: -hit[0]) or [(0, "other")]


def _priority(content: str) -> str:
    words = set(_tokens(content))
    if words & _URGENT or (_sentiment_score(content) <= -3):
        return "high"
    return "low" if _sentiment_score(content) > 0 else "normal"


# ---------------------------------------------------------------------------------------------- composing


def _retone(sentence: str, tone: Tone) -> str:
    table = _CONTRACT if tone == "friendly" else _EXPAND if tone == "formal" else ()
    for pattern, replacement in table:
        sentence = re.sub(pattern, replacement, sentence)
    return sentence


def _strip_details(sentence: str) -> str:
    main = re.split(r"[,;:]\s+|\s+[-–—]\s+", sentence.rstrip(".!?"), maxsplit=1)[0]
    if len(main.split()) < 4:
        main = sentence.rstrip(".!?")
    main = _DETAIL.sub("", main).strip().rstrip(",;:-")
    return main + "." if len(main.split()) >= 2 else ""


def _trim(words: list[str], limit: int) -> str:
    kept = words[:limit]
    while len(kept) > 1 and kept[-1].lower().strip(",;:.!?") in _STOPWORDS:
        kept.pop()
    return " ".join(kept).rstrip(",;:-.!?") + "."


def _select(
    sentences: Sequence[str], ranking: Sequence[int], budget: int | None, count: int | None, banned: int | None
) -> tuple[list[int], bool]:
    """The best sentences within the word budget and count, and whether the (only) one must be trimmed to fit."""
    chosen: list[int] = []
    used = 0
    for index in ranking:
        if index == banned:
            continue
        if count is not None and len(chosen) >= count:
            break
        length = len(sentences[index].split())
        if budget is None or used + length <= budget:
            chosen.append(index)
            used += length
        elif not chosen:
            return [index], True  # the best sentence does not fit: it is cut, not passed over for a worse one
    return chosen, False


def _synonyms(text: str, rng: random.Random) -> str:
    present = sorted({word.lower() for word in re.findall(r"[A-Za-z]+", text)} & _SYNONYMS.keys())
    for word in rng.sample(present, min(3, len(present))):
        replacement = _SYNONYMS[word]

        def swap(match: re.Match[str], replacement: str = replacement) -> str:
            return replacement.capitalize() if match.group(0)[0].isupper() else replacement

        text = re.sub(rf"\b{word}\b", swap, text, count=1, flags=re.I)
    return text


def _title(text: str) -> str:
    words = text.split()
    return " ".join(
        word
        if index and word.lower() in _SMALL_WORDS
        else re.sub(r"^([^A-Za-z0-9]*)([a-z])", lambda m: m.group(1) + m.group(2).upper(), word)
        for index, word in enumerate(words)
    )


_CASE_CHANGES: dict[Case, Any] = {"upper": str.upper, "lower": str.lower, "title": _title, "as-is": str}


def _apply_case(text: str, case: Case) -> str:
    return _CASE_CHANGES[case](text)


def _respond(reading: PromptReading, rng: random.Random, variation: float) -> str:
    vary = variation > 0 and rng.random() < variation
    if reading.output_format == "json":
        return _json_answer(reading, rng, vary)
    if reading.task != "summary":
        return _apply_case(_label(reading, reading.task, rng, vary), reading.case)
    return _summary(reading, rng, vary, plain=False)


def _label(reading: PromptReading, task: str, rng: random.Random, vary: bool) -> str:
    content = " ".join(_sentences(reading.content))  # greetings and sign-offs say nothing about the ticket
    if task == "keywords":
        words = _keywords(content, reading.keyword_count + 1)
        kept = words[: reading.keyword_count]
        if vary and len(words) > reading.keyword_count and kept:
            kept[-1] = words[-1]  # a near tie for the last place
        return ", ".join(kept)
    if task == "sentiment":
        score = _sentiment_score(content)
        if vary and abs(score) <= 1:
            return "neutral" if score else rng.choice(("positive", "negative"))
        return _sentiment(score)
    if task == "priority":
        return _priority(content)
    ranked = _categories(content)
    if vary and len(ranked) > 1 and ranked[1][0] >= ranked[0][0] - 1:
        return ranked[1][1]
    return ranked[0][1]


def _json_answer(reading: PromptReading, rng: random.Random, vary: bool) -> str:
    answer: dict[str, Any] = {}
    for key in reading.json_keys:
        if key == "summary":
            answer[key] = _summary(reading, rng, vary, plain=True)
        elif key == "customer":
            answer[key] = _apply_case(reading.customer or "", reading.case) or None
        elif key == "product":
            answer[key] = _apply_case(reading.product or "", reading.case) or None
        elif key == "keywords":
            answer[key] = _label(reading, "keywords", rng, vary).split(", ")
        else:
            answer[key] = _label(reading, key, rng, vary)
    return json.dumps(answer, ensure_ascii=False)


def _summary(reading: PromptReading, rng: random.Random, vary: bool, *, plain: bool) -> str:
    sentences = [_retone(sentence, reading.tone) for sentence in _sentences(reading.content)]
    if reading.omit_details:
        sentences = [stripped for stripped in map(_strip_details, sentences) if stripped]
    if not sentences:
        nothing: list[str] = ["Nothing", "to", "summarize."]
        return _apply_case(_trim(nothing, reading.max_words or 3), reading.case)
    headline = reading.output_format == "headline"
    decorated = not plain and not headline
    # Before the sentences: a greeting (friendly tone), the product, the customer's name.
    openers: tuple[str, ...] = _OPENERS[reading.tone] if decorated else ()
    opener = openers[0] if openers else ""
    lead_parts: list[str] = []
    if decorated and reading.include_product and reading.product:
        lead_parts.append(f"[{reading.product}]")
    if decorated and reading.include_name and reading.customer:
        if reading.tone == "friendly":
            lead_parts.append(f"{reading.customer.split()[0]} says:")
        else:
            lead_parts.append(f"{reading.customer} reports:" if reading.tone == "formal" else f"{reading.customer}:")
    lead = " ".join(lead_parts)
    budget = min(reading.max_words or 10, 10) if headline else reading.max_words
    if budget is not None:
        if budget - len(opener.split()) - len(lead.split()) < 5:
            opener = ""  # a tight word limit goes to the content, not to pleasantries
        if budget - len(lead.split()) < 4:
            lead = ""
        budget -= len(opener.split()) + len(lead.split())
    count = 1 if headline else reading.max_sentences
    if count is None and budget is None:
        count = 3 if reading.output_format == "bullets" else max(1, min(3, math.ceil(len(sentences) / 3)))
    ranking = _ranking(sentences)
    chosen, trimmed = _select(sentences, ranking, budget, count, banned=None)

    kind: str | None = None
    if vary:
        # Near-equivalent alternatives a sampling model produces, weighted by how often they come up.
        kinds = ["synonym"] * 2
        if len(sentences) > len(chosen):
            kinds += ["swap"] * 3
        if len(chosen) > 1:
            kinds += ["reorder", "reorder", "drop", "drop"]
        if len(openers) > 1 and opener:
            kinds.append("opener")
        kind = rng.choice(kinds)
    if kind == "swap" and chosen:
        worst = max(chosen, key=ranking.index)
        chosen, trimmed = _select(sentences, ranking, budget, count, banned=worst)
    elif kind == "drop":
        chosen = sorted(chosen, key=ranking.index)[:-1]
    elif kind == "opener" and len(openers) > 1:
        opener = openers[1]
    order = sorted(chosen)
    if kind == "reorder":
        at = rng.randrange(len(order) - 1)
        order[at], order[at + 1] = order[at + 1], order[at]
    limit = budget or 10
    parts = [_trim(sentences[index].split(), limit) if trimmed else sentences[index] for index in order]
    if kind == "synonym":
        parts = [_synonyms(part, rng) for part in parts]
    if headline:
        text = _title(_trim(re.sub(r"\s*\([^)]*\)", "", parts[0]).split(), limit).rstrip("."))
        return _apply_case(text, reading.case if reading.case != "as-is" else "title")
    if reading.output_format == "bullets" and not plain:
        lines = [line for line in (opener, lead) if line] + [f"- {part}" for part in parts]
        return _apply_case("\n".join(lines), reading.case)
    return _apply_case(" ".join(piece for piece in (opener, lead, *parts) if piece), reading.case)
