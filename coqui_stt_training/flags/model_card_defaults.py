"""Coqui's model-card flag defaults: the help texts themselves, which an export writes into its card when
the flag is left alone (as Coqui does)."""

CONTACT = (
    "<public contact information of the author. Can be an email address, or a link to a contact form, "
    "issue tracker, or discussion forum. Must provide a way to reach the model authors>"
)
LICENSE = (
    "<SPDX identifier of the license of the exported model. See https://spdx.org/licenses/. "
    "If the license does not have an SPDX identifier, use the license name.>"
)
LANGUAGE = (
    "<language the model was trained on - IETF BCP 47 language tag including at least language, script "
    'and region subtags. E.g. "en-Latn-UK" or "de-Latn-DE" or "cmn-Hans-CN". Include as much info as '
    "you can without loss of precision. For example, if a model is trained on Scottish English, include "
    'the variant subtag: "en-Latn-GB-Scotland".>'
)
MIN_VERSION = "<minimum Coqui STT version (inclusive) the exported model is compatible with>"
MAX_VERSION = "<maximum Coqui STT version (inclusive) the exported model is compatible with>"
DESCRIPTION = (
    "<Freeform description of the model being exported. Markdown accepted. You can also leave this flag "
    "unchanged and edit the generated .md file directly. Useful things to describe are demographic and "
    "acoustic characteristics of the data used to train the model, any architectural changes, names of "
    "public datasets that were used when applicable, hyperparameters used for training, evaluation "
    "results on standard benchmark datasets, etc.>"
)
