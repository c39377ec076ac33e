# Pillar top file. Every server gets the whole platform model: a load balancer needs the
# webservers, a nameserver needs the load balancers' addresses, and so on. Each minion's states
# pick out what concerns its own role(s) (see salt/top.sls).
base:
  '*':
    - paphosting
