"""The model card's position, carried by every answer Aris gives."""

NOTICE = (
    "Preliminary output of a MedGemma-family model: not for diagnosis, patient management or "
    "treatment without review by a qualified clinician."
)


HAI_DEF_TERMS = (
    "MedGemma weights are gated under the Health AI Developer Foundations terms of use "
    "(https://developers.google.com/health-ai-developer-foundations/terms): accept them on the "
    "model's Hugging Face page before `aris pull`."
)
