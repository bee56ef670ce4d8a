"""A real Kubernetes control plane built from Go source, on loopback: `python -m ci.localk8s`.

Reusable pieces for a node and for tests:
- `versions.select()`: the Kubernetes release (`$KUBERNETES_VERSION` or the pinned default);
- `build.build(release)`: build (or find up to date) the binaries, returns their directory;
- `cluster.Cluster`: a cluster's state dir, CA (`cluster.ca`), `issue_client_cert(user, groups)`,
  `write_user_kubeconfig`, `apiserver_url`, `bin(name)`, `start_process` and `stop_process`;
- `network`: loopback address, service and pod CIDRs, cluster DNS IP, free ports;
- `pytest_plugin`: the `k8s_kubeconfig` and `kubectl` fixtures.
"""
