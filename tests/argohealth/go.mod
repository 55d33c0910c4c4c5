// A test tool: Argo CD health scripts run in gopher-lua (see main.go).
module hearth.dev/tests/argohealth

go 1.26.6

require github.com/yuin/gopher-lua v1.1.2
