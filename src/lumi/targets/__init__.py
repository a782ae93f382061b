"""Deploy targets: what takes an app beyond ``lumi run`` — container images, AWS Lambda zips,
Kubernetes manifests. Each reads the app's config and interfaces; none runs services itself."""
