// argohealth runs an Argo CD health script (Lua) on objects, in gopher-lua, the Lua that Argo CD itself
// runs them in, with the object as the global `obj`, as Argo CD sets it.
//
//	stdin:  {"script": "...", "objects": [object, ...]}
//	stdout: [{"status": "...", "message": "..."}, ...]
package main

import (
	"encoding/json"
	"fmt"
	"os"

	lua "github.com/yuin/gopher-lua"
)

type health struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

// value is a JSON value as the Lua value Argo CD hands a script: objects and arrays become tables.
func value(L *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case map[string]any:
		table := L.NewTable()
		for k, item := range v {
			table.RawSetString(k, value(L, item))
		}
		return table
	case []any:
		table := L.NewTable()
		for i, item := range v {
			table.RawSetInt(i+1, value(L, item))
		}
		return table
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case bool:
		return lua.LBool(v)
	}
	return lua.LNil
}

func evaluate(script string, object map[string]any) (health, error) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}, {lua.StringLibName, lua.OpenString}, {lua.MathLibName, lua.OpenMath}} {
		L.Push(L.NewFunction(lib.open))
		L.Push(lua.LString(lib.name))
		L.Call(1, 0)
	}
	L.SetGlobal("obj", value(L, object))
	if err := L.DoString(script); err != nil {
		return health{}, err
	}
	result, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		return health{}, fmt.Errorf("the script returned %s, not a table", L.Get(-1).Type())
	}
	return health{lua.LVAsString(result.RawGetString("status")), lua.LVAsString(result.RawGetString("message"))}, nil
}

func main() {
	var input struct {
		Script  string           `json:"script"`
		Objects []map[string]any `json:"objects"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&input); err != nil {
		fmt.Fprintln(os.Stderr, "argohealth: reading the input:", err)
		os.Exit(2)
	}
	out := make([]health, 0, len(input.Objects))
	for _, object := range input.Objects {
		found, err := evaluate(input.Script, object)
		if err != nil {
			fmt.Fprintln(os.Stderr, "argohealth:", err)
			os.Exit(1)
		}
		out = append(out, found)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(1)
	}
}
