"""How mail clients mark quoted history, as data: one row per client (or family) and language.

``reply`` compiles these rows into its patterns; adding a client or a language is one row.
Patterns are regular-expression fragments matched against LOWER-CASED lines, without nested
quantifiers (the matching must stay linear on hostile text). They are written from how the
clients format a reply, not from any test corpus.
"""

# The rows are words of many scripts; letters that look Latin are meant as they are.
# ruff: noqa: RUF001

from __future__ import annotations

__all__ = [
    "ATTRIBUTIONS",
    "BANNERS",
    "FOOTERS",
    "HEADER_BLOCKS",
    "LOOSE_FOOTERS",
    "SEPARATOR_WORDS",
    "SIGNATURE_DELIMITERS",
]

# Attribution lines above a quote: (client / language, words the line may start with, the verb
# or phrase just before the final colon). "On <date>, <name> wrote:" is Gmail, Apple Mail and
# Thunderbird in English; the other rows are the same clients (and Outlook for Mac) localised.
ATTRIBUTIONS: tuple[tuple[str, str, str], ...] = (
    ("English", "on", r"wrote|writes|has written"),
    ("German", "am", r"schrieb|schreibt|hat geschrieben"),
    ("French", "le", r"a écrit|écrit|a ecrit"),
    ("Spanish", "el", r"escribió|escribio|ha escrito"),
    ("Catalan", "el", r"va escriure"),
    ("Galician", "o", r"escribiu"),
    ("Basque", "", r"idatzi du"),
    ("Italian", "il", r"ha scritto|scrisse"),
    ("Dutch", "op", r"schreef|heeft geschreven|het volgende geschreven"),
    ("Portuguese", r"em|no dia", r"escreveu"),
    ("Swedish / Danish / Norwegian", r"den|d\.|på", r"skrev|skrev følgende"),
    ("Finnish", "", r"kirjoitti"),
    ("Estonian", "", r"kirjutas"),
    ("Latvian", "", r"rakstīja"),
    ("Lithuanian", "", r"rašė"),
    ("Icelandic", "", r"skrifaði"),
    (
        "Polish (Gmail, Thunderbird, Apple Mail)",
        r"w dniu|dnia|wiadomość",
        r"napisał\(a\)|napisał|napisała|napisal|pisze|napisana przez",
    ),
    ("Czech", "dne", r"napsal\(a\)|napsal|napsala"),
    ("Slovak", "dňa", r"napísal\(a\)|napísal|napísala"),
    (
        "Slovenian / Croatian / Serbian / Bosnian",
        "",
        r"je napisal(?:/-?a)?|je napisao(?:/la)?|napisala|napisao",
    ),
    ("Romanian", "pe", r"a scris"),
    ("Hungarian", "", r"írta|ezt írta"),
    ("Russian", r"в|на", r"написал\(а\)|написал|написала|пишет"),
    ("Ukrainian", r"в|о", r"написав\(ла\)|написав|написала|пише"),
    ("Bulgarian", r"на|в", r"написа"),
    ("Serbian (Cyrillic)", "", r"је написао(?:/ла)?|је написала|написао је|написала је"),
    ("Turkish", "", r"yazdı|şunu yazdı"),
    ("Greek", "", r"έγραψε"),
    ("Vietnamese", "vào", r"đã viết"),
    ("Indonesian / Malay", "pada", r"menulis"),
    ("Filipino", "noong", r"sinulat ni"),
    ("Thai", "เมื่อ", r"เขียนว่า"),
    ("Hindi", "", r"ने लिखा"),
    ("Persian", "", r"نوشت"),
    ("Urdu", "", r"نے لکھا"),
    ("Arabic", "في", r"كتب"),
    ("Hebrew", "", r"כתב|כתבה"),
    ("Afrikaans", "op", r"het geskryf"),
    ("Swahili", "", r"aliandika"),
    ("Chinese (Gmail, Foxmail, Apple Mail)", r"在|于|於", r"写道|寫道"),
    ("Korean (Gmail)", "", r"작성|님이 작성"),
    (
        "Japanese (Outlook for Mac, Apple Mail, Thunderbird)",
        "",
        r"のメッセージ|のメール|は書きました|書きました",
    ),
)

# Outlook-style header blocks that start the original: (language, the From key, other keys).
# A block is two or more of these lines, one a From key; a From line with an address is enough.
HEADER_BLOCKS: tuple[tuple[str, str, str], ...] = (
    ("English", "from", r"sent|date|to|cc|bcc|subject|reply-to|importance"),
    ("German", "von", r"gesendet|datum|an|cc|kopie|betreff"),
    ("French", r"de|message du", r"envoyé|envoyé le|date|à|a|cc|copie à|objet|sujet"),
    ("Spanish", "de", r"enviado|enviado el|fecha|para|cc|asunto"),
    ("Italian", "da", r"inviato|data|a|cc|oggetto"),
    ("Dutch", "van", r"verzonden|datum|aan|cc|onderwerp"),
    ("Portuguese", "de", r"enviada|enviado|enviada em|data|para|cc|assunto"),
    ("Swedish", "från", r"skickat|datum|till|kopia|ämne"),
    ("Danish / Norwegian", "fra", r"sendt|dato|til|cc|kopi|emne"),
    ("Finnish", "lähettäjä", r"lähetetty|päivämäärä|vastaanottaja|kopio|aihe"),
    ("Polish", "od", r"wysłano|data|do|dw|temat"),
    ("Czech / Slovak", "od", r"odesláno|odoslané|datum|komu|kopie|předmět|predmet"),
    ("Hungarian", "feladó", r"elküldve|dátum|címzett|másolat|tárgy"),
    ("Romanian", "de la", r"trimis|data|către|cc|subiect"),
    ("Croatian / Serbian", "šalje", r"poslano|datum|prima|predmet"),
    ("Russian", "от", r"отправлено|дата|кому|копия|тема"),
    ("Ukrainian", "від", r"надіслано|дата|кому|копія|тема"),
    ("Turkish", "kimden", r"gönderildi|gönderilme tarihi|tarih|kime|bilgi|konu"),
    ("Greek", "από", r"στάλθηκε|ημερομηνία|προς|κοιν|θέμα"),
    ("Chinese (simplified)", "发件人", r"发送时间|日期|收件人|抄送|主题"),
    ("Chinese (traditional)", "寄件者", r"寄件日期|日期|收件者|副本|主旨"),
    ("Japanese", "差出人", r"送信日時|日付|宛先|cc|件名"),
    ("Korean", "보낸 사람", r"보낸 날짜|날짜|받는 사람|참조|제목"),
    ("Catalan", "de", r"enviat|enviat el|data|per a|a|cc|tema|assumpte"),
    ("Slovenian", "od", r"poslano|datum|za|kp|zadeva"),
    ("Lithuanian", "nuo", r"išsiųsta|data|kam|kopija|tema"),
    ("Estonian", "saatja", r"saadetud|kuupäev|adressaat|koopia|teema"),
    ("Bulgarian", "от", r"изпратено|дата|до|копие|относно"),
    ("Serbian (Cyrillic)", "шаље", r"послато|датум|прима|тема"),
    ("Indonesian / Malay", "dari", r"dikirim|tanggal|kepada|cc|subjek|perihal"),
    ("Vietnamese", "từ", r"đã gửi|ngày|đến|cc|chủ đề"),
    ("Hebrew", "מאת", r"נשלח|תאריך|אל|עותק|נושא"),
    ("Arabic", "من", r"تم الإرسال|التاريخ|إلى|نسخة|الموضوع"),
    ("Thai", "จาก", r"ส่ง|วันที่|ถึง|สำเนาถึง|เรื่อง"),
)

# Words inside a "----- Original Message -----" style banner, per language.
SEPARATOR_WORDS: tuple[tuple[str, str], ...] = (
    ("English", r"original message|forwarded message|message"),
    ("German", r"ursprüngliche nachricht|originalnachricht|weitergeleitete nachricht|nachricht"),
    ("French", r"message d'origine|message original|message transféré"),
    ("Spanish", r"mensaje original|mensaje reenviado"),
    ("Italian", r"messaggio originale|messaggio inoltrato"),
    ("Dutch", r"oorspronkelijk bericht|origineel bericht|doorgestuurd bericht"),
    ("Portuguese", r"mensagem original|mensagem encaminhada"),
    ("Swedish", r"ursprungligt meddelande|originalmeddelande|vidarebefordrat meddelande"),
    ("Danish / Norwegian", r"oprindelig (?:meddelelse|besked)|opprinnelig melding|videresendt"),
    ("Finnish", r"alkuperäinen viesti|välitetty viesti"),
    ("Polish", r"oryginalna wiadomość|wiadomość oryginalna|przekazana wiadomość"),
    ("Czech / Slovak", r"původní zpráva|pôvodná správa|přeposlaná zpráva"),
    ("Hungarian", r"eredeti üzenet|továbbított üzenet"),
    ("Russian", r"исходное сообщение|оригинальное сообщение|пересылаемое сообщение"),
    ("Ukrainian", r"початкове повідомлення|оригінальне повідомлення|переслане повідомлення"),
    ("Turkish", r"orijinal mesaj|özgün ileti|iletilen mesaj"),
    ("Chinese", r"原始邮件|原始郵件|转发的邮件|轉寄的郵件"),
    ("Japanese", r"元のメッセージ|転送されたメッセージ"),
    ("Korean", r"원본 메시지|전달된 메시지"),
    ("Catalan / Romanian", r"missatge original|mesaj original|mesaj redirecționat"),
    ("Greek", r"αρχικό μήνυμα|προωθημένο μήνυμα"),
    ("Croatian / Serbian / Slovenian", r"izvorna poruka|izvirno sporočilo|originalna poruka"),
    ("Bulgarian / Serbian (Cyrillic)", r"оригинално съобщение|оригинална порука"),
    ("Baltic", r"algsõnum|pradinis laiškas|sākotnējais ziņojums"),
    ("Indonesian / Malay / Vietnamese", r"pesan asli|mesej asal|thư gốc"),
    ("Hebrew / Arabic / Thai", r"הודעה מקורית|الرسالة الأصلية|ข้อความต้นฉบับ"),
    (
        'Zoho Mail ("---- On <date> <name> wrote ----")',
        r"wrote|schrieb|a écrit|escribió|ha scritto",
    ),
)

# Whole-line banners before a forwarded or quoted original (Apple Mail and others).
BANNERS: tuple[tuple[str, str], ...] = (
    ("English (Apple Mail)", r"begin forwarded message:"),
    ("German (Apple Mail)", r"anfang der weitergeleiteten nachricht:"),
    ("French (Apple Mail)", r"début du message réexpédié\s?:"),
    ("Spanish (Apple Mail)", r"inicio del mensaje reenviado:"),
    ("Italian (Apple Mail)", r"inizio messaggio inoltrato:"),
    ("Dutch (Apple Mail)", r"begin doorgestuurd bericht:"),
    ("Portuguese (Apple Mail)", r"início da mensagem reencaminhada:"),
)

# Lines a mobile or web client appends below the new text. Everything from such a line on is
# dropped: below it comes only the quoted original, which some clients do not mark with ">".
# Names are one to five words ("Sent from my Samsung Galaxy smartphone."), never a sentence.
# A link may follow ("Get Outlook for iOS<https://aka.ms/o0ukef>").
_NAME = r"[\w'’®™.-]+(?: [\w'’®™.-]+){0,4}"
_APPS = (
    r"spark|superhuman|airmail|mailbird|bluemail|blue mail|proton ?mail|tutanota|edison mail|"
    r"aol mail|samsung mobile|outlook|gmail|mymail|zoho mail|yahoo mail|correo|mail"
)
FOOTERS: tuple[tuple[str, str], ...] = (
    ("English (iOS, Android, BlackBerry, ...)", rf"sent from my {_NAME}"),
    ("English (Windows Mail)", r"sent from mail for windows(?: 10| 11)?"),
    ("English (Outlook mobile)", r"get outlook for (?:ios|android)"),
    ("English (Yahoo Mail)", r"sent from yahoo mail(?: (?:for|on) (?:iphone|android|ios))?"),
    ("English (mail apps)", rf"sent (?:from|via|with) (?:{_APPS})(?: for {_NAME}| on {_NAME})?"),
    ("German", rf"von meinem {_NAME} gesendet"),
    (
        "German (Outlook mobile)",
        r"gesendet von outlook für (?:ios|android)|outlook für (?:ios|android) herunterladen",
    ),
    ("French", rf"envoyé (?:de|depuis) mon {_NAME}"),
    (
        "French (Outlook mobile)",
        r"envoyé à partir de outlook pour (?:ios|android)|obtenir outlook pour (?:ios|android)",
    ),
    ("Spanish", rf"enviado desde mi {_NAME}|enviado desde (?:{_APPS})(?: para {_NAME})?"),
    ("Italian", rf"inviato da(?:l mio)? {_NAME}"),
    (
        "Spanish / Italian / Portuguese (Outlook mobile)",
        r"(?:obtener|ottieni|obter) outlook (?:para|per) (?:ios|android)",
    ),
    ("Dutch", rf"verzonden (?:vanaf|met|van) mijn {_NAME}|outlook voor (?:ios|android) downloaden"),
    ("Portuguese", rf"enviado do meu {_NAME}"),
    ("Swedish", rf"skickat från min {_NAME}"),
    ("Danish / Norwegian", rf"sendt fra min {_NAME}"),
    ("Finnish", rf"lähetetty {_NAME}-laitteesta|lähetetty {_NAME}sta"),
    ("Polish", rf"wysłane z (?:mojego )?{_NAME}"),
    ("Czech", rf"odesláno z (?:mého )?{_NAME}"),
    ("Russian", rf"отправлено с (?:моего )?{_NAME}"),
    ("Ukrainian", rf"надіслано з (?:мого )?{_NAME}"),
    ("Turkish", rf"{_NAME}['’](?:dan|den|tan|ten) gönderildi"),
    ("Romanian", rf"trimis de pe {_NAME}"),
    ("Hungarian", rf"{_NAME}-?r[óő]l küldve"),
    ("Croatian / Serbian / Bosnian", rf"poslano (?:s|sa) (?:mog |mojeg )?{_NAME}"),
    ("Slovak", rf"odoslané z (?:môjho )?{_NAME}"),
    ("Catalan", rf"enviat des de (?:el meu |l['’])?{_NAME}"),
    ("Greek", rf"εστάλη από (?:το |τη |την )?{_NAME}"),
    ("Indonesian / Malay", rf"(?:dikirim|dihantar) dari {_NAME}"),
    ("Vietnamese", rf"được gửi từ {_NAME}"),
    ("Hebrew", rf"נשלח מ{_NAME}"),
    ("Arabic", rf"أُ?رسلت من {_NAME}"),
    ("Thai (its vowel and tone marks are no \\w)", r"ส่งจาก [^.!?]{1,40}"),
    ("Hindi", r"मेरे [^.!?]{1,30} से भेजा गया"),
    (
        "Chinese",
        r"发自我的\s?[\w ]{1,30}|從我的\s?[\w ]{1,30}傳送|从我的\s?[\w ]{1,30}发送|来自我的\s?[\w ]{1,30}",
    ),
    ("Japanese", r"[\w ]{1,30}から送信"),
    ("Korean", r"[\w ]{1,30}에서 보냄"),
)

# Lines that are a footer only when a reply header, banner or quote follows them directly
# ("Sent from a magnificent torch of pixels" above "On ... wrote:"): custom device footers.
LOOSE_FOOTERS: tuple[tuple[str, str], ...] = (
    ("English", r"sent (?:from|via|with|using|by|on) [^.!?]{1,60}"),
    ("German", r"gesendet (?:von|mit|über) [^.!?]{1,60}"),
    (
        "French / Spanish / Portuguese",
        r"(?:envoyé|enviado) (?:de|depuis|desde|do|avec|con|via) [^.!?]{1,60}",
    ),
)

# Lines that start a trailing signature: the RFC 3676 "-- ", and dash rules people type.
SIGNATURE_DELIMITERS: tuple[tuple[str, str], ...] = (
    ("RFC 3676 (also without the space)", r"--"),
    ("em and en dashes", r"[—–]+"),
)
