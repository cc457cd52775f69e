"""The built-in extractors (`pip install 'ingestd[text]'`): Markdown from PDF, Word,
PowerPoint, Excel/CSV, HTML, e-mail, RTF, OpenDocument text and plain text.

Registered through the `ingestd` entry-point group exactly like a third-party plugin;
each module imports its parsing library only when it runs, so a missing library makes
that extractor unavailable (with what to install) instead of breaking the plugin."""

from ingestd.plugin import hookimpl
from ingestd_text.mail import Email
from ingestd_text.odt import OpenDocumentText
from ingestd_text.pdf import Pdf
from ingestd_text.plain import PlainText
from ingestd_text.rtf import Rtf
from ingestd_text.sheets import Csv, Spreadsheet
from ingestd_text.slides import Presentation
from ingestd_text.web import Html
from ingestd_text.word import WordDocument

EXTRACTORS = (Pdf, WordDocument, Presentation, Spreadsheet, Csv, Html, Email, Rtf, OpenDocumentText, PlainText)


@hookimpl
def register_extractors(register):
    for cls in EXTRACTORS:
        register(cls)
