use super::*;
use proptest::prelude::*;

fn wrap(name: &str, value: Vec<u8>) -> Any {
    Any {
        type_url: type_url(name),
        value,
    }
}

fn s(x: &str) -> Value {
    Value::from(x)
}

#[test]
fn scalars_encode_to_the_protobuf_value_bytes() {
    // Bytes as protoc writes them for google.protobuf.Value.
    let cases: Vec<(Value, Vec<u8>)> = vec![
        (Value::Nil, vec![0x08, 0x00]),
        (Value::Bool(true), vec![0x20, 0x01]),
        (Value::Int(1), vec![0x11, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]),
        (Value::Float(-2.5), vec![0x11, 0, 0, 0, 0, 0, 0, 0x04, 0xc0]),
        (s("hi"), vec![0x1a, 0x02, b'h', b'i']),
    ];
    for (v, bytes) in cases {
        let a = encode_result(&v).unwrap();
        assert_eq!(a.type_url, VALUE_URL);
        assert_eq!(a.value, bytes, "{v:?}");
    }
}

#[test]
fn tables_encode_as_struct_or_list() {
    let obj = Value::table(Table::default().with("a", s("b")));
    // Value{struct_value(5): Struct{fields(1): Entry{key(1)="a", value(2)=Value{string(3)="b"}}}}
    let entry = [0x0a, 0x01, b'a', 0x12, 0x03, 0x1a, 0x01, b'b'];
    let mut strukt = vec![0x0a, entry.len() as u8];
    strukt.extend_from_slice(&entry);
    let mut want = vec![0x2a, strukt.len() as u8];
    want.extend_from_slice(&strukt);
    assert_eq!(encode_result(&obj).unwrap().value, want);

    let list = Value::table(Table {
        array: vec![Value::Bool(false)],
        map: vec![],
    });
    // Value{list_value(6): ListValue{values(1): Value{bool(4)=false}}}
    assert_eq!(
        encode_result(&list).unwrap().value,
        vec![0x32, 0x04, 0x0a, 0x02, 0x20, 0x00]
    );
    assert_eq!(
        encode_result(&Value::table(Table::default()))
            .unwrap()
            .value,
        vec![0x32, 0x00],
        "an empty table is an empty list, as in json"
    );
}

#[test]
fn unencodable_results_are_errors_not_panics() {
    let mixed = Value::table(Table {
        array: vec![Value::Int(1)],
        map: vec![(s("k"), Value::Int(2))],
    });
    assert!(encode_result(&mixed).is_err());
    let bad_key = Value::table(Table {
        array: vec![],
        map: vec![(Value::Bool(true), Value::Int(2))],
    });
    assert!(encode_result(&bad_key).is_err());
    assert!(encode_result(&Value::Str(vec![0xff, 0xfe])).is_err());
    assert!(encode_result(&Value::Int(i64::MAX)).is_err());
    assert!(encode_result(&Value::error(crate::value::ErrorValue::new(
        "Internal", "x"
    )))
    .is_err());
    let mut deep = Value::Int(1);
    for _ in 0..(MAX_DEPTH + 5) {
        deep = Value::table(Table {
            array: vec![deep],
            map: vec![],
        });
    }
    assert!(encode_result(&deep).is_err());
}

#[test]
fn a_raw_any_result_passes_through() {
    let raw = Value::table(
        Table::default()
            .with("type_url", s("type.googleapis.com/acme.Order"))
            .with("value", Value::Str(vec![1, 2, 0xff])),
    );
    let a = encode_result(&raw).unwrap();
    assert_eq!(a.type_url, "type.googleapis.com/acme.Order");
    assert_eq!(a.value, vec![1, 2, 0xff]);
    assert_eq!(
        decode_input(Some(&a)).unwrap(),
        raw,
        "and decodes back to the same table"
    );
}

#[test]
fn wrappers_decode_to_lua_values() {
    let cases: Vec<(&str, Vec<u8>, Value)> = vec![
        (
            "google.protobuf.StringValue",
            vec![0x0a, 0x01, b'x'],
            s("x"),
        ),
        (
            "google.protobuf.BytesValue",
            vec![0x0a, 0x01, 0xff],
            Value::Str(vec![0xff]),
        ),
        (
            "google.protobuf.BoolValue",
            vec![0x08, 0x01],
            Value::Bool(true),
        ),
        (
            "google.protobuf.Int64Value",
            vec![0x08, 0x7f],
            Value::Int(127),
        ),
        // -1 as int64 is ten bytes of varint.
        (
            "google.protobuf.Int64Value",
            vec![
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
            Value::Int(-1),
        ),
        (
            "google.protobuf.Int32Value",
            vec![0x08, 0x05],
            Value::Int(5),
        ),
        (
            "google.protobuf.UInt32Value",
            vec![0x08, 0x05],
            Value::Int(5),
        ),
        (
            "google.protobuf.UInt64Value",
            vec![0x08, 0x05],
            Value::Int(5),
        ),
        (
            "google.protobuf.DoubleValue",
            [vec![0x09], 0.5f64.to_le_bytes().to_vec()].concat(),
            Value::Float(0.5),
        ),
        (
            "google.protobuf.FloatValue",
            [vec![0x0d], 2.0f32.to_le_bytes().to_vec()].concat(),
            Value::Int(2),
        ),
        ("google.protobuf.StringValue", vec![], s("")),
        ("google.protobuf.BoolValue", vec![], Value::Bool(false)),
        ("google.protobuf.Int64Value", vec![], Value::Int(0)),
    ];
    for (name, bytes, want) in cases {
        assert_eq!(
            decode_input(Some(&wrap(name, bytes))).unwrap(),
            want,
            "{name}"
        );
    }
}

#[test]
fn absent_input_is_nil_and_unknown_types_arrive_raw() {
    assert_eq!(decode_input(None).unwrap(), Value::Nil);
    let a = wrap("acme.Thing", vec![9, 9]);
    let v = decode_input(Some(&a)).unwrap();
    let Value::Table(t) = v else { panic!() };
    assert_eq!(
        t.get("type_url"),
        Some(&s("type.googleapis.com/acme.Thing"))
    );
    assert_eq!(t.get("value"), Some(&Value::Str(vec![9, 9])));
}

#[test]
fn malformed_bytes_are_errors() {
    let bad: Vec<Vec<u8>> = vec![
        vec![0x0a],                   // tag, no length
        vec![0x1a, 0x05, b'a'],       // length beyond the end
        vec![0x11, 0x00],             // truncated double
        vec![0x2a, 0x02, 0x0a, 0x09], // struct entry beyond its message
        vec![0x1b],                   // group wire type
        vec![0x00],                   // field number 0
        vec![0x08; 1],
        vec![0xff; 11], // varint too long
    ];
    for b in bad {
        assert!(
            decode_input(Some(&wrap("google.protobuf.Value", b.clone()))).is_err(),
            "{b:?}"
        );
    }
    // A deeply nested list is refused, not a stack overflow.
    let mut v = vec![0x08, 0x00];
    for _ in 0..200 {
        let mut list = vec![0x0a];
        put_varint(&mut list, v.len() as u64);
        list.extend_from_slice(&v);
        let mut outer = vec![0x32];
        put_varint(&mut outer, list.len() as u64);
        outer.extend_from_slice(&list);
        v = outer;
    }
    assert!(decode_input(Some(&wrap("google.protobuf.Value", v))).is_err());
}

fn lua_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::Bool),
        (-(1i64 << 53)..(1i64 << 53)).prop_map(Value::Int),
        any::<f64>()
            .prop_filter("not whole", |f| f.is_finite() && f.fract() != 0.0)
            .prop_map(Value::Float),
        "[a-z]{0,6}".prop_map(|x| Value::from(x.as_str())),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone().prop_filter("no nil", |v| !v.is_nil()), 0..4)
                .prop_map(|array| Value::table(Table { array, map: vec![] })),
            prop::collection::btree_map(
                "[a-z]{1,4}",
                inner.prop_filter("no nil", |v| !v.is_nil()),
                1..4
            )
            .prop_map(|m| Value::table(Table {
                array: vec![],
                map: m
                    .into_iter()
                    .map(|(k, v)| (Value::from(k.as_str()), v))
                    .collect(),
            })),
        ]
    })
}

proptest! {
    #[test]
    fn results_round_trip_through_protobuf_value(v in lua_value()) {
        let a = encode_result(&v).unwrap();
        prop_assert_eq!(decode_input(Some(&a)).unwrap(), v);
    }

    #[test]
    fn any_bytes_decode_without_panicking(b in prop::collection::vec(any::<u8>(), 0..64), pick in 0usize..4) {
        let name = ["google.protobuf.Value", "google.protobuf.Struct", "google.protobuf.ListValue", "google.protobuf.Int64Value"][pick];
        let _ = decode_input(Some(&wrap(name, b)));
    }
}
