# /etc/lictor.d/server.hcl on each of 3 (or 5) server machines.
datacenter       = "dc1"
data_dir         = "/var/lib/lictor"
server           = true
bootstrap_expect = 3
bind_addr        = "{{ this machine's private IP }}"
client_addr      = "127.0.0.1"
retry_join       = ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
log_level        = "info"
ui_config {
  enabled = true
}
connect {
  enabled = true
}
