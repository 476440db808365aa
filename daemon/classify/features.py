"""What a message carries, as the three texts the models read.

``words``: the subject and the decoded text (HTML already converted by the mail parser), for
word unigrams and bigrams. ``chars``: the subject and the start of the text, for character
n-grams that survive obfuscation (``v1agra``) and languages without spaces.

``head``: header evidence as tokens: the sender's and the links' domains and how they agree
(Message-ID, Reply-To), recipients, attachments, tricks in HTML (forms, scripts, hidden
text), where the mail entered the Internet, Authentication-Results. Header *names* are not
used as such: which headers a collector added to a corpus says nothing about mail in general.
Nor are the traits that tell one corpus, era or language from another rather than spam from
ham: the subject's script, charsets and transfer encodings, the mail client, HTML styling and
the number of Received hops. A model trained on a 2002 corpus of English mailing lists
learnt from them that umlauts, HTML, UTF-8 and direct delivery are spam, and flagged a
customer's "AW: Anfrage ... Präsentation" as such.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from postdesk.daemon.mail.parse import ParsedMessage

MAX_WORD_CHARS = 20_000
MAX_CHAR_CHARS = 500
_URL = re.compile(r"(?i)\b(?:https?://|www\.)([a-z0-9.\-]{1,253})")
# where a link can start in the lower-cased text: only "h", "t", "p", "w" match those letters
# regardless of case, so every match of _URL starts at one of these
_URL_STARTS = ("http", "www.")
_RECEIVED_FROM = re.compile(r"(?i)^\s*from\s+(\S+)")
_UNKNOWN = re.compile(r"(?i)\bunknown\b")
_AUTH_RESULT = re.compile(r"(?i)\b(spf|dkim|dmarc|arc)\s*=\s*([a-z]+)")
_IP = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")


@dataclass(frozen=True)
class Sample:
    """One message as the models read it."""

    words: str
    chars: str
    head: str


def from_text(subject: str, body: str) -> Sample:
    """A sample from plain text only (CSV rows): no header evidence."""
    return Sample(
        words=f"{subject}\n{body[:MAX_WORD_CHARS]}",
        chars=f"{subject}\n{body[:MAX_CHAR_CHARS]}",
        head="",
    )


def from_message(parsed: ParsedMessage) -> Sample:
    """A sample from a parsed message: its text and its header evidence."""
    sample = from_text(parsed.subject, parsed.text)
    return Sample(sample.words, sample.chars, " ".join(header_tokens(parsed)))


def header_tokens(parsed: ParsedMessage) -> list[str]:
    """Header and structure evidence of ``parsed`` as ``kind:value`` tokens."""
    tokens: list[str] = []
    tokens += _sender(parsed)
    tokens += _recipients(parsed)
    tokens += _structure(parsed)
    tokens += _links(parsed)
    tokens += _received(parsed)
    tokens += _authentication(parsed)
    tokens += _subject(parsed.subject)
    return [token.replace(" ", "_") for token in tokens]


def _domain_tokens(kind: str, host: str) -> list[str]:
    """``kind_dom`` (last two labels), ``kind_tld``, or ``kind_ip`` for an address literal."""
    host = host.strip("[]<>.").lower()
    if not host:
        return [f"{kind}_none"]
    if _IP.match(host):
        return [f"{kind}_ip"]
    labels = host.split(".")
    return [f"{kind}_dom:{'.'.join(labels[-2:])}", f"{kind}_tld:{labels[-1]}"]


def _bucket(count: int) -> str:
    """A count on a log scale: 0, 1, 2, 3-4, 5-8, ..."""
    return str(0 if count <= 0 else 1 + int(math.log2(count)))


def _sender(parsed: ParsedMessage) -> list[str]:
    tokens: list[str] = []
    if parsed.from_addr is None:
        return ["from_none"]
    local, _, domain = parsed.from_addr.rpartition("@")
    tokens += _domain_tokens("from", domain)
    if any(ch.isdigit() for ch in local):
        tokens.append("from_local_digits")
    if not parsed.from_name:
        tokens.append("from_no_name")
    reply_domains = {addr.rpartition("@")[2] for addr in parsed.reply_to}
    if reply_domains and domain not in reply_domains:
        tokens.append("replyto_other_domain")
    msgid_domain = parsed.message_id.rpartition("@")[2].rstrip(">").lower()
    if parsed.message_id_generated:
        tokens.append("msgid_none")
    elif msgid_domain.split(".")[-2:] != domain.split(".")[-2:]:
        tokens.append("msgid_other_domain")
    if parsed.date is None:
        tokens.append("date_none")
    return tokens


def _recipients(parsed: ParsedMessage) -> list[str]:
    tokens = [f"to_n:{_bucket(len(parsed.to))}", f"cc_n:{_bucket(len(parsed.cc))}"]
    if parsed.in_reply_to or parsed.references:
        tokens.append("is_reply")
    if parsed.header("list-id"):
        tokens.append("list_mail")
    precedence = (parsed.header("precedence") or "").strip().lower()
    if precedence:
        tokens.append(f"precedence:{precedence[:20]}")
    priority = (parsed.header("x-priority") or "").strip()[:1]
    if priority:
        tokens.append(f"x_priority:{priority}")
    return tokens


def _structure(parsed: ParsedMessage) -> list[str]:
    tokens = []
    if parsed.html is not None:
        if parsed.content_type == "text/html":
            tokens.append("html_only")
        lowered = parsed.html[:50_000].lower()
        for marker in ("<form", "<script", "display:none"):
            if marker in lowered:
                tokens.append(f"html_has:{marker.strip('<')}")
    tokens.append(f"text_len:{_bucket(len(parsed.text) // 64)}")
    if not parsed.text.strip():
        tokens.append("text_empty")
    tokens.append(f"attachments:{_bucket(len(parsed.attachments))}")
    for item in parsed.attachments[:10]:
        tokens.append(f"att:{item.content_type}")
        tokens.append(f"att_ext:{item.filename.rpartition('.')[2].lower()[:10]}")
    tokens.append(f"defects:{_bucket(len(parsed.defects))}")
    return tokens


def _links(parsed: ParsedMessage) -> list[str]:
    source = parsed.text[:MAX_WORD_CHARS] + " " + (parsed.html or "")[:50_000]
    hosts = [found.lower().strip(".") for found in link_hosts(source)]
    tokens = [f"links:{_bucket(len(hosts))}", f"link_hosts:{_bucket(len(set(hosts)))}"]
    for host in sorted(set(hosts))[:20]:
        tokens += _domain_tokens("link", host)
    return tokens


def link_hosts(source: str) -> list[str]:
    """What ``_URL.finditer`` finds in ``source`` (each link's host as written), trying the
    pattern only where the lower-cased text says a link starts (a scan of every position with
    the case-blind pattern costs more than the rest of the features together)."""
    lowered = source.lower()
    if len(lowered) != len(source):  # a letter became two: positions no longer line up
        return [match.group(1) for match in _URL.finditer(source)]
    hosts: list[str] = []
    end = 0
    for start in sorted(_occurrences(lowered, _URL_STARTS)):
        if start >= end:
            match = _URL.match(source, start)
            if match:
                hosts.append(match.group(1))
                end = match.end()
    return hosts


def _occurrences(text: str, needles: tuple[str, ...]) -> list[int]:
    """Every position where one of ``needles`` starts in ``text`` (``str.find``: no scan of
    every position by the regular-expression engine)."""
    found: list[int] = []
    for needle in needles:
        at = text.find(needle)
        while at >= 0:
            found.append(at)
            at = text.find(needle, at + 1)
    return found


def _received(parsed: ParsedMessage) -> list[str]:
    hops = parsed.header_all("received")
    tokens: list[str] = []
    if hops:
        origin = _RECEIVED_FROM.match(hops[-1])
        if origin:
            tokens += _domain_tokens("origin", origin.group(1))
            if _UNKNOWN.search(hops[-1].split(" by ", 1)[0]):
                tokens.append("origin_unknown_rdns")
    return tokens


def _authentication(parsed: ParsedMessage) -> list[str]:
    tokens = [
        f"auth:{method.lower()}={result.lower()}"
        for value in parsed.header_all("authentication-results")[:1]
        for method, result in _AUTH_RESULT.findall(value)
    ]
    received_spf = (parsed.header("received-spf") or "").strip().split(" ", 1)[0].lower()
    if received_spf:
        tokens.append(f"received_spf:{received_spf[:12]}")
    return tokens


def _subject(subject: str) -> list[str]:
    if not subject:
        return ["subject_none"]
    letters = [ch for ch in subject if ch.isalpha()]
    upper = sum(ch.isupper() for ch in letters)
    tokens = []
    if letters and upper / len(letters) > 0.6 and len(letters) > 5:
        tokens.append("subject_shouting")
    if "!" in subject:
        tokens.append("subject_exclamation")
    if "$" in subject or "%" in subject:
        tokens.append("subject_money")
    return tokens
