"""jaxsoc.detectors: anomaly detectors over per-host telemetry, and how good they are.

    import jax, jaxsoc.env as soc
    from jaxsoc import detectors as det
    env, params = soc.make("soc-v2")
    stream = det.gather_telemetry(jax.random.key(0), env, params, num_envs=256, num_steps=64)
    windows, _ = det.sample_windows(jax.random.key(1), stream, window=4, num=32768)  # unlabelled
    ae, losses = det.train_autoencoder(jax.random.key(2), windows, det.AutoencoderConfig())
    zs = det.fit_zscore(windows, robust=True)
    threshold = det.calibrate_threshold(det.autoencoder_scores(ae, windows), target_fpr=0.01)
    det.save_detector("detectors/ae", ae, params, threshold, 0.01)

Files, one purpose each: `telemetry` (per-host telemetry, gathering, windows), `zscore` (the
z-score baseline), `autoencoder` (the autoencoder), `threshold` (calibration to a false-alarm
target), `quality` (ROC-AUC, PR-AUC, detection rate at a false-alarm rate, time to first alarm),
`store` (checkpoints). See docs/detectors.md.
"""
from jaxsoc.detectors.autoencoder import (AutoencoderConfig, AutoencoderDetector, WindowAutoencoder,
                                          autoencoder_scores, train_autoencoder)
from jaxsoc.detectors.quality import (average_precision, detection_rate_at_fpr, detection_rate_subsets,
                                      first_alarm_delays, negative_share_below, roc_auc, roc_auc_subsets,
                                      roc_curve, threshold_at_fpr)
from jaxsoc.detectors.store import load_detector, read_detector_meta, save_detector
from jaxsoc.detectors.telemetry import (TelemetryStream, gather_telemetry, host_labels, host_telemetry,
                                        sample_windows, sliding_scores, telemetry_world, window_valid, windows_at)
from jaxsoc.detectors.threshold import calibrate_threshold, check_target_fpr
from jaxsoc.detectors.zscore import ZScoreDetector, fit_zscore, zscore_scores

__all__ = [
    "AutoencoderConfig", "AutoencoderDetector", "TelemetryStream", "WindowAutoencoder",
    "ZScoreDetector", "autoencoder_scores", "average_precision", "calibrate_threshold",
    "check_target_fpr", "detection_rate_at_fpr", "detection_rate_subsets", "first_alarm_delays", "fit_zscore",
    "gather_telemetry", "host_labels", "host_telemetry", "load_detector", "read_detector_meta",
    "negative_share_below", "roc_auc", "roc_auc_subsets", "roc_curve", "sample_windows", "save_detector", "sliding_scores",
    "telemetry_world",
    "threshold_at_fpr", "train_autoencoder", "window_valid", "windows_at", "zscore_scores",
]
