//! Enums whose variants have fixed names (attribute types, merge policies, priorities…).

/// Declares an enum whose every variant is written as a fixed name, and gives it:
///
/// - `ALL`: every variant, in declaration order;
/// - `as_str`: the variant's name;
/// - `parse`: the variant of exactly this name (`None` for any other text);
/// - `Serialize` and `Deserialize` as the name.
///
/// ```text
/// named_enum! {
///     #[derive(Debug, Clone, Copy, PartialEq, Eq)]
///     pub enum Side {
///         Left = "left",
///         Right = "right",
///     }
/// }
/// ```
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: [$name; [$($text),+].len()] = [$($name::$variant),+];

            /// The variant's name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The variant of exactly this name.
            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
                $name::parse(&s).ok_or_else(|| {
                    <D::Error as serde::de::Error>::unknown_variant(&s, &[$($text),+])
                })
            }
        }
    };
}

pub(crate) use named_enum;

#[cfg(test)]
mod tests {
    named_enum! {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        enum Side {
            #[default]
            Left = "left",
            /// The other one.
            Right = "right_side",
        }
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(Side::ALL, [Side::Left, Side::Right]);
        assert_eq!(Side::default(), Side::Left);
        for s in Side::ALL {
            assert_eq!(Side::parse(s.as_str()), Some(s));
            let json = serde_json::to_value(s).unwrap();
            assert_eq!(json, serde_json::Value::from(s.as_str()));
            assert_eq!(serde_json::from_value::<Side>(json).unwrap(), s);
        }
        assert_eq!(Side::parse("Left"), None);
        assert_eq!(Side::parse("right"), None);
        let e = serde_json::from_str::<Side>("\"up\"").unwrap_err();
        assert!(e.to_string().contains("unknown variant `up`"), "{e}");
    }
}
