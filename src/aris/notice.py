"""The model card's position, carried by every answer Aris gives."""

NOTICE = (
    "Preliminary output of a MedGemma-family model: not for diagnosis, patient management or "
    "treatment without review by a qualified clinician."
)

DEMO_NOTICE = (
    "Demo model: a tiny, randomly initialised Gemma 3 vision-language model ran this prompt to show the "
    "path end to end. Its words are noise, not medical output."
)

HAI_DEF_TERMS = (
    "MedGemma weights are gated under the Health AI Developer Foundations terms of use "
    "(https://developers.google.com/health-ai-developer-foundations/terms): accept them on the "
    "model's Hugging Face page before `aris pull`."
)
