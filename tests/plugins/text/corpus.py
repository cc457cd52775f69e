"""A corpus of documents written by each format's own library from known text, so what
an extractor gives back can be checked against what went in: every sentence, every
heading (as a Markdown heading) and every table (as a pipe table).

Deterministic (seeded), generated once per test session into a temp dir, never committed.
"""

from __future__ import annotations

import io
import random
import zipfile
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

WORDS = ("amber basalt cedar delta ember fjord garnet harbor indigo juniper kestrel lagoon meadow "
         "nectar orchid pebble quartz raven saffron thistle umber violet willow xenon yarrow zephyr "
         "café naïve façade über smörgåsbord crème").split()


@dataclass
class Doc:
    path: Path
    mime: str
    sentences: list[str]
    headings: list[str] = field(default_factory=list)
    tables: list[list[list[str]]] = field(default_factory=list)  # each: rows of cells, first the header
    parts: int | None = None  # pages, sheets or slides expected


class Text:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.count = 0

    def sentence(self) -> str:
        self.count += 1
        words = [self.rng.choice(WORDS) for _ in range(self.rng.randint(6, 10))]
        return f"Sentence {self.count} says " + " ".join(words) + "."

    def heading(self) -> str:
        self.count += 1
        return f"Heading {self.count} {self.rng.choice(WORDS).title()}"

    def table(self, rows: int = 3, cols: int = 3) -> list[list[str]]:
        self.count += 1
        header = [f"Col{self.count}x{c}" for c in range(cols)]
        return [header] + [[f"r{r}c{c} {self.rng.choice(WORDS)}" for c in range(cols)] for r in range(rows)]


def docx_file(path: Path, t: Text) -> Doc:
    import docx

    d = docx.Document()
    doc = Doc(path, "application/vnd.openxmlformats-officedocument.wordprocessingml.document", [])
    for _ in range(2):
        h = t.heading()
        d.add_heading(h, level=t.rng.randint(1, 3))
        doc.headings.append(h)
        for _ in range(2):
            s = t.sentence()
            d.add_paragraph(s)
            doc.sentences.append(s)
        s = t.sentence()
        d.add_paragraph(s, style="List Bullet")
        doc.sentences.append(s)
    rows = t.table()
    table = d.add_table(rows=len(rows), cols=len(rows[0]))
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    doc.tables.append(rows)
    d.save(path)
    return doc


def pptx_file(path: Path, t: Text) -> Doc:
    import pptx
    from pptx.util import Inches

    deck = pptx.Presentation()
    doc = Doc(path, "application/vnd.openxmlformats-officedocument.presentationml.presentation", [], parts=3)
    for number in range(3):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        title = t.heading()
        slide.shapes.title.text = title
        doc.headings.append(title)
        body = slide.placeholders[1].text_frame
        first = t.sentence()
        body.text = first
        second = t.sentence()
        body.add_paragraph().text = second
        doc.sentences += [first, second]
        if number == 2:
            rows = t.table()
            shape = slide.shapes.add_table(len(rows), len(rows[0]), Inches(1), Inches(4), Inches(6), Inches(2))
            for r, row in enumerate(rows):
                for c, value in enumerate(row):
                    shape.table.cell(r, c).text = value
            doc.tables.append(rows)
    deck.save(path)
    return doc


def xlsx_file(path: Path, t: Text) -> Doc:
    import openpyxl

    book = openpyxl.Workbook()
    doc = Doc(path, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", [], parts=2)
    for index in range(2):
        sheet = book.active if index == 0 else book.create_sheet()
        sheet.title = f"Sheet{t.count + 1}"
        rows = t.table(rows=4)
        rows[1][1] = t.sentence()
        doc.sentences.append(rows[1][1])
        for row in rows:
            sheet.append(row)
        doc.tables.append(rows)
        doc.headings.append(sheet.title)
    book.save(path)
    return doc


def csv_file(path: Path, t: Text) -> Doc:
    rows = t.table(rows=5)
    rows[2][0] = t.sentence()
    delimiter = t.rng.choice([",", ";", "\t"])
    lines = [delimiter.join(f'"{v}"' if delimiter in v else v for v in row) for row in rows]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(t.rng.choice(["utf-8", "utf-8-sig"])))
    return Doc(path, "text/csv", [rows[2][0]], tables=[rows])


def pdf_file(path: Path, t: Text) -> Doc:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=A4)
    doc = Doc(path, "application/pdf", [], parts=2)
    for _ in range(2):
        y = 780
        for _ in range(3):
            s = t.sentence()
            # one line per sentence, small enough to fit the page's width
            size = 9
            while pdfmetrics.stringWidth(s, "Helvetica", size) > 500 and size > 5:
                size -= 1
            c.setFont("Helvetica", size)
            c.drawString(40, y, s)
            doc.sentences.append(s)
            y -= 20
        c.showPage()
    c.save()
    return doc


def html_file(path: Path, t: Text) -> Doc:
    h1, h2 = t.heading(), t.heading()
    s = [t.sentence() for _ in range(4)]
    rows = t.table()
    cells = "".join("<tr>" + "".join(f"<{'th' if i == 0 else 'td'}>{v}</{'th' if i == 0 else 'td'}>" for v in row)
                    + "</tr>" for i, row in enumerate(rows))
    html = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>{h1}</title></head><body>
<nav><ul><li><a href="/">Navigation home link</a></li><li><a href="/about">Navigation about link</a></li></ul></nav>
<main><article><h1>{h1}</h1><p>{s[0]}</p><p>{s[1]}</p><h2>{h2}</h2>
<ul><li>{s[2]}</li><li>{s[3]}</li></ul><table>{cells}</table></article></main>
<footer>Footer boilerplate text that is not content</footer></body></html>"""
    path.write_text(html, encoding="utf-8")
    return Doc(path, "text/html", s, [h1, h2], [rows])


def eml_file(path: Path, t: Text) -> Doc:
    msg = EmailMessage()
    subject = t.heading()
    msg["Subject"] = subject
    msg["From"] = "Alice Example <alice@example.com>"
    msg["To"] = "bob@example.com"
    msg["Date"] = "Mon, 01 Jan 2024 09:30:00 +0000"
    s = [t.sentence() for _ in range(3)]
    if t.count % 2:
        msg.set_content("\n\n".join(s))
    else:
        msg.set_content("\n\n".join(s))
        msg.add_alternative("<html><body>" + "".join(f"<p>{x}</p>" for x in s) + "</body></html>", subtype="html")
    msg.add_attachment(b"%PDF-1.4 attachment", maintype="application", subtype="pdf", filename="report.pdf")
    path.write_bytes(bytes(msg))
    return Doc(path, "message/rfc822", s, [subject])


def rtf_file(path: Path, t: Text) -> Doc:
    s = [t.sentence() for _ in range(3)]

    def esc(text: str) -> str:
        return "".join(ch if ord(ch) < 128 else f"\\u{ord(ch)}?" for ch in text)

    body = "".join(f"{esc(x)}\\par\n" for x in s)
    path.write_text("{\\rtf1\\ansi\\deff0{\\fonttbl{\\f0 Times;}}\n" + body + "}", encoding="ascii")
    return Doc(path, "text/rtf", s)


def odt_file(path: Path, t: Text) -> Doc:
    from odf.opendocument import OpenDocumentText
    from odf.table import Table, TableCell, TableColumn, TableRow
    from odf.text import H, List, ListItem, P

    document = OpenDocumentText()
    doc = Doc(path, "application/vnd.oasis.opendocument.text", [])
    h = t.heading()
    document.text.addElement(H(outlinelevel=1, text=h))
    doc.headings.append(h)
    for _ in range(2):
        s = t.sentence()
        document.text.addElement(P(text=s))
        doc.sentences.append(s)
    items = List()
    for _ in range(2):
        s = t.sentence()
        item = ListItem()
        item.addElement(P(text=s))
        items.addElement(item)
        doc.sentences.append(s)
    document.text.addElement(items)
    rows = t.table()
    table = Table(name="T")
    table.addElement(TableColumn(numbercolumnsrepeated=len(rows[0])))
    for row in rows:
        tr = TableRow()
        for value in row:
            tc = TableCell()
            tc.addElement(P(text=value))
            tr.addElement(tc)
        table.addElement(tr)
    document.text.addElement(table)
    doc.tables.append(rows)
    document.save(str(path))
    return doc


def text_file(path: Path, t: Text) -> Doc:
    s = [t.sentence() for _ in range(4)]
    encoding = t.rng.choice(["utf-8", "utf-8-sig", "utf-16", "cp1252", "latin-1"])
    body = "\n\n".join(s) + "\n"
    if encoding in ("cp1252", "latin-1"):  # give a single-byte guess enough text to go on
        body = body * 3
    path.write_bytes(body.encode(encoding))
    return Doc(path, "text/plain", s)


def markdown_file(path: Path, t: Text) -> Doc:
    h = t.heading()
    s = [t.sentence() for _ in range(3)]
    rows = t.table()
    table = "\n".join(["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
                      + ["| " + " | ".join(r) + " |" for r in rows[1:]])
    path.write_text(f"# {h}\n\n{s[0]}\n\n- {s[1]}\n- {s[2]}\n\n{table}\n", encoding="utf-8")
    return Doc(path, "text/markdown", s, [h], [rows])


WRITERS = {
    "docx": docx_file, "pptx": pptx_file, "xlsx": xlsx_file, "csv": csv_file, "pdf": pdf_file,
    "html": html_file, "eml": eml_file, "rtf": rtf_file, "odt": odt_file, "txt": text_file, "md": markdown_file,
}


def generate(directory: Path, per_format: int = 20, seed: int = 21) -> list[Doc]:
    """`per_format` files of every format (220 with the default)."""
    directory.mkdir(parents=True, exist_ok=True)
    docs = []
    for ext, writer in WRITERS.items():
        t = Text(seed + len(docs))
        for n in range(per_format):
            docs.append(writer(directory / f"{ext}-{n:03d}.{ext}", t))
    return docs


# -- hostile files ---------------------------------------------------------------------------


def zip_bomb_docx(path: Path, unpacked: int = 1 << 30) -> Path:
    """A valid DOCX whose document.xml unpacks to `unpacked` bytes (a GiB by default)
    from about a MiB: deflate packs runs of one byte ~1000:1."""
    import docx

    d = docx.Document()
    d.add_paragraph("bomb")
    buf = io.BytesIO()
    d.save(buf)
    source = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for item in source.infolist():
            if item.filename == "word/document.xml":
                member = zipfile.ZipInfo(item.filename)
                member.compress_type = zipfile.ZIP_DEFLATED
                with out.open(member, "w", force_zip64=True) as fh:
                    xml = source.read(item.filename)
                    head, tail = xml.split(b"</w:body>")
                    fh.write(head)
                    chunk = b" " * (1 << 20)
                    for _ in range(unpacked >> 20):
                        fh.write(chunk)
                    fh.write(b"</w:body>" + tail)
            else:
                out.writestr(item, source.read(item.filename))
    return path


def reference_loop_pdf(path: Path) -> Path:
    """A PDF whose page tree points back at itself (Kids → the Pages node) and whose
    content stream's /Length is a reference to itself."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        b"<< /Length 4 0 R >>\nstream\nBT /F1 12 Tf 72 712 Td (loop) Tj ET\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path.write_bytes(bytes(out))
    return path


def encrypted_pdf(path: Path, source: Path) -> Path:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(source).pages:
        writer.add_page(page)
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="AES-128")
    with open(path, "wb") as fh:
        writer.write(fh)
    return path


def huge_sheet(path: Path, rows: int = 1_000_000) -> Path:
    """An XLSX made by openpyxl whose sheet is then given `rows` rows (a million by
    default, Excel's maximum), streamed straight into the zip: openpyxl itself would take
    minutes to write them."""
    import openpyxl

    book = openpyxl.Workbook()
    book.active.title = "big"
    book.active["A1"] = "placeholder"
    buf = io.BytesIO()
    book.save(buf)
    source = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    ns = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for item in source.infolist():
            if item.filename != "xl/worksheets/sheet1.xml":
                out.writestr(item, source.read(item.filename))
                continue
            member = zipfile.ZipInfo(item.filename)
            member.compress_type = zipfile.ZIP_DEFLATED
            with out.open(member, "w", force_zip64=True) as fh:
                fh.write(f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{ns}"><sheetData>'.encode())
                batch = []
                for r in range(1, rows + 1):
                    batch.append(f'<row r="{r}"><c r="A{r}"><v>{r}</v></c><c r="B{r}" t="inlineStr"><is><t>row {r} '
                                 f'of a sheet far too big to read whole</t></is></c></row>')
                    if len(batch) == 10_000:
                        fh.write("".join(batch).encode())
                        batch = []
                fh.write(("".join(batch) + "</sheetData></worksheet>").encode())
    return path


def truncated(path: Path, source: Path, keep: float = 0.5) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * keep))])
    return path
