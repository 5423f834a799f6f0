package config

import (
	"reflect"
	"time"
)

// deepCopy returns a copy of *v that shares no pointer, slice or map with
// it. The schema types hold only exported fields of plain kinds, which is
// all it handles, and time.Time (VirtualHost.ClientCANotAfter), a value
// whose unexported fields are copied as a whole.
func deepCopy[T any](v *T) T {
	var out T
	copyValue(reflect.ValueOf(&out).Elem(), reflect.ValueOf(v).Elem())
	return out
}

// deepCopyAny copies the object a pointer of a schema type points to and
// returns a pointer to the copy.
func deepCopyAny(p any) any {
	src := reflect.ValueOf(p)
	dst := reflect.New(src.Type().Elem())
	copyValue(dst.Elem(), src.Elem())
	return dst.Interface()
}

func copyValue(dst, src reflect.Value) {
	switch src.Kind() {
	case reflect.Pointer:
		if src.IsNil() {
			return
		}
		n := reflect.New(src.Type().Elem())
		copyValue(n.Elem(), src.Elem())
		dst.Set(n)
	case reflect.Struct:
		if src.Type() == reflect.TypeFor[time.Time]() {
			dst.Set(src)
			return
		}
		for i := range src.NumField() {
			copyValue(dst.Field(i), src.Field(i))
		}
	case reflect.Slice:
		if src.IsNil() {
			return
		}
		n := reflect.MakeSlice(src.Type(), src.Len(), src.Len())
		for i := range src.Len() {
			copyValue(n.Index(i), src.Index(i))
		}
		dst.Set(n)
	case reflect.Map:
		if src.IsNil() {
			return
		}
		n := reflect.MakeMapWithSize(src.Type(), src.Len())
		it := src.MapRange()
		for it.Next() {
			v := reflect.New(src.Type().Elem()).Elem()
			copyValue(v, it.Value())
			n.SetMapIndex(it.Key(), v)
		}
		dst.Set(n)
	default:
		dst.Set(src)
	}
}
