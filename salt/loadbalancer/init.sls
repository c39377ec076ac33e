# The load-balancer role: haproxy configured from pillar paphosting (see docs/haproxy.md).
include:
  - loadbalancer.package
  - loadbalancer.config
  - loadbalancer.service
