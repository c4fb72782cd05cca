"""The screening verdict: decided once a new annotator has answered every screening question."""

from django.contrib.auth.models import User
from django.db import transaction

from labeling import queries
from labeling.models import AnnotatorProfile, QualitySettings
from labeling.services.quality import agreement_summarise, quality_settings_get, screening_passes


@transaction.atomic
def annotator_screening_update(
    *, annotator: User, quality: QualitySettings | None = None
) -> bool | None:
    """Decide screening once the annotator has labeled every required screening question.

    Returns the verdict (also stored on the profile), or None while questions remain. A verdict
    already recorded is kept: re-screening is an admin decision. Authors of gold labels pass
    without questions: they wrote the answer key, and are never served their own items.
    """
    quality = quality or quality_settings_get()
    profile, _ = AnnotatorProfile.objects.select_for_update().get_or_create(user=annotator)
    annotator.annotator_profile = profile  # keep the copy the request holds current
    if profile.screening_passed is not None:
        return profile.screening_passed
    if queries.user_authored_gold(annotator):
        verdict = True
    else:
        required = queries.screening_tasks_required(quality=quality)
        if not required:
            return None
        pairs = queries.gold_rating_pairs(annotator=annotator, task_ids=required)
        if len(pairs) < len(required):
            return None
        verdict = screening_passes(
            summary=agreement_summarise(pairs), pass_mark=quality.screening_pass_mark
        )
    profile.screening_passed = verdict
    profile.save(update_fields=["screening_passed"])
    return verdict
