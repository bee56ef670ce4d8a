"""Scripts that CI and contributors run (local Kubernetes, image builds, install checks)."""
