"""One form engine for every form Linli asks a resident to fill in: the dispute intake
(assistant/data/forms/*.yaml) and each government procedure (connectors/services/procedures).

Forms are data: fields with a type from one registry (`FIELD_TYPES`, extended with
`register_field_type`), bilingual labels and prompts, choices with keywords. Answers that cannot
be used raise `FieldError`, worded from messages.yaml in zh or en.
"""

from connectors.forms import field_types as _field_types  # noqa: F401 - registers the built-in types
from connectors.forms.errors import MESSAGES, FieldError, InvalidFormFile
from connectors.forms.fields import FIELD_TYPES, Choice, FieldParser, FieldValue, FormField, register_field_type
from connectors.forms.loading import SchemaReader, load_form, read_fields
from connectors.forms.spec import FormSpec

__all__ = [
    "FIELD_TYPES",
    "MESSAGES",
    "Choice",
    "FieldError",
    "FieldParser",
    "FieldValue",
    "FormField",
    "FormSpec",
    "InvalidFormFile",
    "SchemaReader",
    "load_form",
    "read_fields",
    "register_field_type",
]
