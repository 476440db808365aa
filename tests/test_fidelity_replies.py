"""Reply extraction, one case per client and language (issue 9, item 4).

Each case is written from how that client formats a reply: the new text on top, then the
client's footer, attribution line or header block, then the original (quoted or not).
"""

# Attribution lines and headers in many scripts; letters that look Latin are meant as they are.
# ruff: noqa: RUF001

from __future__ import annotations

import pytest

from postdesk.daemon.mail.reply import extract_new_text

NEW = "Danke, das hat geholfen.\nBis bald"
ORIGINAL = "> Haben Sie den Drucker neu gestartet?\n> Gruß, Support\n"
PLAIN_ORIGINAL = "Haben Sie den Drucker neu gestartet?\nGruß, Support\n"

# (client / language, what stands between the new text and the original)
ATTRIBUTIONS = [
    ("Gmail English", "On Mon, 3 Mar 2025 at 10:00, Support <support@example.com> wrote:"),
    ("Apple Mail English", "On 3 Mar 2025, at 10:00, Support <support@example.com> wrote:"),
    ("Thunderbird English", "On 03/03/2025 10:00, Support wrote:"),
    ("Gmail German", "Am Mo., 3. März 2025 um 10:00 Uhr schrieb Support <support@example.com>:"),
    ("Thunderbird German", "Am 03.03.25 um 10:00 schrieb Support:"),
    ("German without a date", "Support <support@example.com> schrieb:"),
    ("Gmail French", "Le lun. 3 mars 2025 à 10:00, Support <support@example.com> a écrit :"),
    ("Gmail Spanish", "El lun, 3 mar 2025 a las 10:00, Support (<support@example.com>) escribió:"),
    (
        "Gmail Italian",
        "Il giorno lun 3 mar 2025 alle ore 10:00 Support <support@example.com> ha scritto:",
    ),
    ("Gmail Dutch", "Op ma 3 mrt 2025 om 10:00 schreef Support <support@example.com>:"),
    (
        "Gmail Portuguese",
        "Em seg., 3 de mar. de 2025 às 10:00, Support <support@example.com> escreveu:",
    ),
    ("Gmail Swedish", "Den mån 3 mars 2025 kl 10:00 skrev Support <support@example.com>:"),
    ("Gmail Danish", "Den man. 3. mar. 2025 kl. 10.00 skrev Support <support@example.com>:"),
    ("Gmail Norwegian", "man. 3. mar. 2025 kl. 10:00 skrev Support <support@example.com>:"),
    ("Gmail Finnish", "ma 3.3.2025 klo 10.00 Support (support@example.com) kirjoitti:"),
    ("Gmail Polish", "pon., 3 mar 2025 o 10:00 Support <support@example.com> napisał(a):"),
    ("Thunderbird Polish", "W dniu 3.03.2025 o 10:00, Support pisze:"),
    ("Gmail Czech", "po 3. 3. 2025 v 10:00 odesílatel Support <support@example.com> napsal:"),
    ("Gmail Russian", "пн, 3 мар. 2025 г. в 10:00, Support <support@example.com>:"),
    ("Yandex Russian", '03.03.2025, 10:00, "Support" <support@example.com>:'),
    ("Thunderbird Russian", "03.03.2025 10:00, Support пишет:"),
    ("Gmail Ukrainian", "пн, 3 бер. 2025 р. о 10:00 Support <support@example.com> пише:"),
    ("Ukrainian written", "3 березня 2025 р. Support <support@example.com> написав:"),
    ("Gmail Turkish", "3 Mar 2025 Pzt, 10:00 tarihinde Support <support@example.com> şunu yazdı:"),
    (
        "Gmail Hungarian",
        "Support <support@example.com> ezt írta (időpont: 2025. márc. 3., H, 10:00):",
    ),
    ("Gmail Greek", "Δευ, 3 Μαρ 2025 στις 10:00, ο/η Support <support@example.com> έγραψε:"),
    ("Gmail Romanian", "Pe lun., 3 mar. 2025 la 10:00, Support <support@example.com> a scris:"),
    ("Gmail Chinese", "Support <support@example.com> 于2025年3月3日周一 10:00写道："),
    ("Apple Mail Chinese", "在 2025年3月3日，10:00，Support <support@example.com> 写道："),
    ("Gmail Japanese", "2025年3月3日(月) 10:00 Support <support@example.com>:"),
    ("Outlook for Mac Japanese", "2025/03/03 10:00、Support <support@example.com> のメッセージ:"),
    ("Gmail Korean", "2025년 3월 3일 (월) 오전 10:00, Support <support@example.com>님이 작성:"),
    (
        "Gmail Vietnamese",
        "Vào Th 2, 3 thg 3, 2025 vào lúc 10:00 Support <support@example.com> đã viết:",
    ),
    (
        "Apple Mail Dutch",
        "Op 3 mrt. 2025 om 10:00 heeft Support <support@example.com> het volgende geschreven:",
    ),
    (
        "Apple Mail Polish",
        "Wiadomość napisana przez Support <support@example.com> w dniu 03.03.2025, o godz. 10:00:",
    ),
    (
        "Gmail Catalan",
        "El dl., 3 de març 2025 a les 10:00, Support (<support@example.com>) va escriure:",
    ),
    (
        "Gmail Galician",
        "O lun., 3 de mar. de 2025 ás 10:00, Support (<support@example.com>) escribiu:",
    ),
    (
        "Gmail Indonesian",
        "Pada tanggal Sen, 3 Mar 2025 pukul 10.00 Support <support@example.com> menulis:",
    ),
    (
        "Gmail Filipino",
        "Noong Lun, Mar 3, 2025 nang 10:00 AM, sinulat ni Support <support@example.com> na:",
    ),
    (
        "Gmail Estonian",
        "Support <support@example.com> kirjutas kuupäeval E, 3. märts 2025 kell 10:00:",
    ),
    ("Gmail Lithuanian", "2025-03-03, pr, 10:00, Support <support@example.com> rašė:"),
    (
        "Gmail Latvian",
        "pirmd., 2025. g. 3. marts, plkst. 10:00 — lietotājs Support (<support@example.com>)"
        " rakstīja:",
    ),
    ("Gmail Bulgarian", "пн, 3.03.2025 г. в 10:00 Support <support@example.com> написа:"),
    ("Gmail Serbian", "пон, 3. мар 2025. у 10:00 Support <support@example.com> је написао/ла:"),
    ("Gmail Croatian", "pon, 3. ožu 2025. u 10:00 Support <support@example.com> je napisao/la:"),
    (
        "Gmail Slovenian",
        "Support <support@example.com> je napisal/-a dne pon., 3. mar. 2025 ob 10:00:",
    ),
    ("Gmail Thai", "เมื่อ จ. 3 มี.ค. 2025 เวลา 10:00 Support <support@example.com> เขียนว่า:"),
    ("Gmail Hindi", "सोम, 3 मार्च 2025 को 10:00 am बजे Support <support@example.com> ने लिखा:"),
    (  # the parts of right-to-left attributions come wrapped in bidirectional marks
        "Gmail Hebrew",
        "\u202bבתאריך יום ב׳, 3 במרץ 2025 ב-10:00 מאת \u202aSupport\u202c\u200f"
        " <\u202asupport@example.com\u202c\u200f>:\u202c",
    ),
    (
        "Gmail Arabic",
        "\u202bفي الاثنين، 3 مارس 2025 في 10:00 ص تمت كتابة ما يلي بواسطة \u202aSupport\u202c"
        "\u200f <\u202asupport@example.com\u202c\u200f>:\u202c",
    ),
    (
        "Gmail Persian",
        "\u202b\u202aSupport\u202c\u200f <\u202asupport@example.com\u202c\u200f> در تاریخ"
        " دوشنبه ۳ مارس ۲۰۲۵ ساعت ۱۰:۰۰ نوشت:\u202c",
    ),
    ("Gmail, numeric date without a colon", "2025/3/3 Support <support@example.com>"),
    (
        "Gmail, numeric date, address wrapped",
        "2025-03-03 10:00 GMT+01:00 Support <\nsupport@example.com>:",
    ),
]

HEADER_BLOCKS = [
    (
        "Outlook English",
        "From: Support <support@example.com>\nSent: Monday, March 3, 2025 10:00 AM\nTo: Carol <carol@example.org>\nSubject: RE: Printer",
    ),
    (
        "Outlook German",
        "Von: Support <support@example.com>\nGesendet: Montag, 3. März 2025 10:00\nAn: Carol <carol@example.org>\nBetreff: AW: Drucker",
    ),
    (
        "Outlook French",
        "De : Support <support@example.com>\nEnvoyé : lundi 3 mars 2025 10:00\nÀ : Carol <carol@example.org>\nObjet : RE: Imprimante",
    ),
    (
        "Outlook Spanish",
        "De: Support <support@example.com>\nEnviado el: lunes, 3 de marzo de 2025 10:00\nPara: Carol <carol@example.org>\nAsunto: RE: Impresora",
    ),
    (
        "Outlook Italian",
        "Da: Support <support@example.com>\nInviato: lunedì 3 marzo 2025 10:00\nA: Carol <carol@example.org>\nOggetto: R: Stampante",
    ),
    (
        "Outlook Dutch",
        "Van: Support <support@example.com>\nVerzonden: maandag 3 maart 2025 10:00\nAan: Carol <carol@example.org>\nOnderwerp: RE: Printer",
    ),
    (
        "Outlook Portuguese",
        "De: Support <support@example.com>\nEnviada em: segunda-feira, 3 de março de 2025 10:00\nPara: Carol <carol@example.org>\nAssunto: RE: Impressora",
    ),
    (
        "Outlook Swedish",
        "Från: Support <support@example.com>\nSkickat: den 3 mars 2025 10:00\nTill: Carol <carol@example.org>\nÄmne: SV: Skrivare",
    ),
    (
        "Outlook Polish",
        "Od: Support <support@example.com>\nWysłano: poniedziałek, 3 marca 2025 10:00\nDo: Carol <carol@example.org>\nTemat: RE: Drukarka",
    ),
    (
        "Outlook Czech",
        "Od: Support <support@example.com>\nOdesláno: pondělí 3. března 2025 10:00\nKomu: Carol <carol@example.org>\nPředmět: RE: Tiskárna",
    ),
    (
        "Outlook Russian",
        "От: Support <support@example.com>\nОтправлено: 3 марта 2025 г. 10:00\nКому: Carol <carol@example.org>\nТема: RE: Принтер",
    ),
    (
        "Outlook Ukrainian",
        "Від: Support <support@example.com>\nНадіслано: 3 березня 2025 р. 10:00\nКому: Carol <carol@example.org>\nТема: RE: Принтер",
    ),
    (
        "Outlook Turkish",
        "Kimden: Support <support@example.com>\nGönderildi: 3 Mart 2025 Pazartesi 10:00\nKime: Carol <carol@example.org>\nKonu: YNT: Yazıcı",
    ),
    (
        "Outlook Chinese simplified",
        "发件人: Support <support@example.com>\n发送时间: 2025年3月3日 10:00\n收件人: Carol <carol@example.org>\n主题: 回复: 打印机",
    ),
    (
        "Outlook Chinese full-width colons",
        "发件人：Support <support@example.com>\n发送时间：2025年3月3日 10:00\n收件人：Carol\n主题：回复：打印机",
    ),
    (
        "Outlook Chinese traditional",
        "寄件者: Support <support@example.com>\n寄件日期: 2025年3月3日 10:00\n收件者: Carol\n主旨: 回覆: 印表機",
    ),
    (
        "Outlook Japanese",
        "差出人: Support <support@example.com>\n送信日時: 2025年3月3日 10:00\n宛先: Carol\n件名: RE: プリンター",
    ),
    (
        "Outlook Korean",
        "보낸 사람: Support <support@example.com>\n보낸 날짜: 2025년 3월 3일 월요일 오전 10:00\n받는 사람: Carol\n제목: RE: 프린터",
    ),
    (
        "Outlook with a rule above",
        "________________________________\nFrom: Support <support@example.com>\nSent: Monday, March 3, 2025 10:00 AM",
    ),
    (
        "Outlook bold from HTML",
        "*From:* Support [mailto:support@example.com]\n*Sent:* Monday, March 3, 2025 10:00 AM",
    ),
    ("Bare From line, English", "From: Support <support@example.com>"),
    ("Bare De line, Spanish", "De: Support <support@example.com>"),
    ("Bare Van line, Dutch", "Van: Support [mailto:support@example.com]"),
    ("Bare Da line, Italian", "Da: support@example.com"),
    ("Original message banner", "-----Original Message-----"),
    ("German banner", "-----Ursprüngliche Nachricht-----"),
    ("French banner", "-------- Message d'origine --------"),
    ("Russian banner", "-------- Исходное сообщение --------"),
    ("Greek banner", "-----Αρχικό μήνυμα-----"),
    ("Croatian banner", "-----Izvorna poruka-----"),
    ("Indonesian banner", "-----Pesan Asli-----"),
    ("Hebrew banner", "-----הודעה מקורית-----"),
    ("Romanian banner", "-----Mesaj original-----"),
    ("Apple forward banner", "Begin forwarded message:"),
    (
        "Outlook Indonesian",
        "Dari: Support <support@example.com>\nDikirim: Senin, 03 Maret 2025 10.00\n"
        "Kepada: Carol <carol@example.org>\nSubjek: RE: Printer",
    ),
    (
        "Outlook Vietnamese",
        "Từ: Support <support@example.com>\nĐã gửi: Thứ Hai, 3 tháng 3, 2025 10:00\n"
        "Đến: Carol <carol@example.org>\nChủ đề: RE: Máy in",
    ),
    ("Outlook Hebrew", "מאת: Support <support@example.com>\nנשלח: יום שני 3 מרץ 2025 10:00"),
    ("Outlook Arabic", "من: Support <support@example.com>\nتم الإرسال: الاثنين، 3 مارس 2025"),
    ("Outlook Thai", "จาก: Support <support@example.com>\nส่ง: 3 มีนาคม 2025 10:00"),
    ("Outlook Estonian", "Saatja: Support\nSaadetud: 3. märts 2025 10:00\nAdressaat: Carol"),
    ("Outlook Lithuanian", "Nuo: Support\nIšsiųsta: 2025 m. kovo 3 d. 10:00\nKam: Carol"),
    ("Outlook Bulgarian", "От: Support\nИзпратено: 3 март 2025 г. 10:00\nДо: Carol"),
    ("Outlook Catalan", "De: Support\nEnviat el: dilluns, 3 de març de 2025 10:00\nPer a: Carol"),
]

FOOTERS = [
    ("iPhone English", "Sent from my iPhone"),
    ("BlackBerry", "Sent from my BlackBerry® wireless device"),
    ("Windows Mail", "Sent from Mail for Windows 10"),
    ("Outlook iOS", "Get Outlook for iOS<https://aka.ms/o0ukef>"),
    ("Outlook Android German", "Gesendet von Outlook für Android"),
    ("Yahoo", "Sent from Yahoo Mail on Android"),
    ("Samsung", "Sent from my Samsung Galaxy smartphone."),
    ("iPhone German", "Von meinem iPhone gesendet"),
    ("iPhone French", "Envoyé de mon iPhone"),
    ("iPhone Spanish", "Enviado desde mi iPhone"),
    ("iPhone Italian", "Inviato da iPhone"),
    ("iPhone Dutch", "Verzonden vanaf mijn iPhone"),
    ("iPhone Portuguese", "Enviado do meu iPhone"),
    ("iPhone Swedish", "Skickat från min iPhone"),
    ("iPhone Danish", "Sendt fra min iPhone"),
    ("iPhone Polish", "Wysłane z iPhone'a"),
    ("iPhone Russian", "Отправлено с iPhone"),
    ("iPhone Ukrainian", "Надіслано з iPhone"),
    ("iPhone Chinese", "发自我的iPhone"),
    ("iPhone Japanese", "iPhoneから送信"),
    ("iPhone Chinese, older", "从我的 iPhone 发送"),
    ("iPhone Romanian", "Trimis de pe iPhone-ul meu"),
    ("iPhone Hungarian", "iPhone-ról küldve"),
    ("iPhone Croatian", "Poslano s mog iPhonea"),
    ("iPhone Slovak", "Odoslané z iPhonu"),
    ("iPhone Catalan", "Enviat des de l'iPhone"),
    ("iPhone Greek", "Εστάλη από το iPhone μου"),
    ("iPhone Indonesian", "Dikirim dari iPhone saya"),
    ("Samsung Malay", "Dihantar dari telefon pintar Samsung Galaxy saya."),
    ("iPhone Vietnamese", "Được gửi từ iPhone của tôi"),
    ("iPhone Hebrew", "נשלח מה-iPhone שלי"),
    ("iPhone Arabic", "أُرسلت من الـ iPhone"),
    ("iPhone Thai", "ส่งจาก iPhone ของฉัน"),
    ("iPhone Hindi", "मेरे iPhone से भेजा गया"),
]


@pytest.mark.parametrize(("client", "header"), ATTRIBUTIONS, ids=[c for c, _ in ATTRIBUTIONS])
def test_attribution_line_ends_the_new_text(client: str, header: str) -> None:
    assert extract_new_text(f"{NEW}\n\n{header}\n{ORIGINAL}") == NEW


@pytest.mark.parametrize(("client", "block"), HEADER_BLOCKS, ids=[c for c, _ in HEADER_BLOCKS])
def test_header_block_ends_the_new_text_even_without_quoting(client: str, block: str) -> None:
    assert extract_new_text(f"{NEW}\n\n{block}\n\n{PLAIN_ORIGINAL}") == NEW


@pytest.mark.parametrize(("client", "footer"), FOOTERS, ids=[c for c, _ in FOOTERS])
def test_client_footer_is_dropped_with_the_unquoted_original_below(
    client: str, footer: str
) -> None:
    assert extract_new_text(f"{NEW}\n\n{footer}\n") == NEW
    below = f"{NEW}\n\n{footer}\n\nOn 3 Mar 2025, at 10:00, Support wrote:\n\n{PLAIN_ORIGINAL}"
    assert extract_new_text(below) == NEW
    assert extract_new_text(f"{NEW}\n{footer}\n\n{PLAIN_ORIGINAL}") == NEW


@pytest.mark.parametrize(
    "text",
    [
        "The invoice was sent from my office yesterday, please check.\nThanks",
        "Sent from my desk, which is easier than my phone.",
        "From: the logs I attached, the error starts at 10:00.\nRegards",
        "On Monday I will send the printer back.\nOn the other hand, it works now.",
        "Bob schrieb: das ist kein Zitat\nweiter geht es",
        "Meeting notes:\n- From: 10:00\n- To: 11:00",
        "Ticket 42 wrote: nothing at all",
    ],
)
def test_text_that_only_looks_like_a_marker_is_kept(text: str) -> None:
    assert extract_new_text(text) == text


def test_undated_attribution_counts_only_above_a_quote() -> None:
    assert extract_new_text(f"{NEW}\n\nBob schrieb:\n> Hallo\n") == NEW
    text = f"{NEW}\n\nBob schrieb:\nHallo"
    assert extract_new_text(text) == text
