"""scikit-learn's own estimator checks over the heads, and the transformer with its tags declared."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from features import VGG16Features
from heads import DenseHead, EnsembleHead, LogRegHead, SVMHead

# Small and quick: the checks fit each estimator some fifty times on tiny data, where starting
# joblib's worker processes would cost more than the fits. The dense head trains one network (each
# costs about a second to build and trace whatever the data); its averaged networks are checked in
# tests/test_heads.py.
ONE_JOB = {"n_jobs": 1}
ESTIMATORS = [LogRegHead(**ONE_JOB), SVMHead(**ONE_JOB),
              EnsembleHead(members="logreg,svm", member_params={"logreg": ONE_JOB, "svm": ONE_JOB}),
              DenseHead(units=32, learning_rate=0.05, epochs=4, batch_size=512, patience=1, refit=False, networks=1),
              VGG16Features(image_size=32, weights="none", precision="fp32")]


# On two classes Platt's sigmoid, fitted on the rows as they are, sets the SVM's threshold between
# the classes again, so its class weights move its predictions less than the check asks (with
# three classes they pass it).
TWO_CLASS_CALIBRATION = {"check_class_weight_classifiers": "two classes: Platt's sigmoid refits the class shares"}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=lambda estimator: (
    TWO_CLASS_CALIBRATION if isinstance(estimator, SVMHead) else {}))
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)
