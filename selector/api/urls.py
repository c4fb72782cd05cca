from django.urls import path

from selector.api import views

urlpatterns: list = [
    path("train/", views.TrainView.as_view(), name="api-selector-train"),
    path("evaluate/", views.EvaluateView.as_view(), name="api-selector-evaluate"),
    path("promote/", views.PromoteView.as_view(), name="api-selector-promote"),
    path("score/", views.ScoreView.as_view(), name="api-selector-score"),
    path("fill/", views.FillView.as_view(), name="api-selector-fill"),
    path("generate/", views.GenerateView.as_view(), name="api-selector-generate"),
    path("versions/", views.VersionListView.as_view(), name="api-selector-versions"),
]
