//! Enums stored as text: in pipeline files (serde), in Parquet columns and on the command line.
//! One macro gives each its spelling, parsing (`FromStr`, one error text listing the choices),
//! `Display` and serde, so a categorical value is never compared as a raw string.

/// A closed set of named values.
pub trait TextEnum: Sized + Copy + 'static {
    /// What the values are called in error messages ("metric", "action", …).
    const WHAT: &'static str;
    const ALL: &'static [Self];
    fn as_str(self) -> &'static str;

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.as_str() == s)
    }

    /// Parse, or an error that lists the choices.
    fn parse_or_err(s: &str) -> anyhow::Result<Self> {
        Self::parse(s).ok_or_else(|| {
            anyhow::anyhow!(
                "unknown {} {s:?}: choose one of {}",
                Self::WHAT,
                Self::ALL
                    .iter()
                    .map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }
}

/// `text_enum!(/// doc
///     pub enum Name("what") { Variant = "text", … })`
#[macro_export]
macro_rules! text_enum {
    ($(#[$m:meta])* pub enum $name:ident ($what:literal) { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vm])* $v),+ }

        impl $crate::text_enum::TextEnum for $name {
            const WHAT: &'static str = $what;
            const ALL: &'static [Self] = &[$($name::$v),+];
            fn as_str(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$($name::$v),+];

            pub fn as_str(self) -> &'static str {
                <Self as $crate::text_enum::TextEnum>::as_str(self)
            }

            #[allow(dead_code)]
            pub fn parse(s: &str) -> Option<Self> {
                <Self as $crate::text_enum::TextEnum>::parse(s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = anyhow::Error;
            fn from_str(s: &str) -> anyhow::Result<Self> {
                <Self as $crate::text_enum::TextEnum>::parse_or_err(s)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                <Self as $crate::text_enum::TextEnum>::parse_or_err(&s)
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}

#[cfg(test)]
mod tests {

    crate::text_enum!(
        /// A test enum.
        pub enum Color("color") { Red = "red", DarkBlue = "dark-blue" }
    );

    #[test]
    fn spelling_parsing_serde() {
        assert_eq!(Color::DarkBlue.to_string(), "dark-blue");
        assert_eq!("red".parse::<Color>().unwrap(), Color::Red);
        let e = "green".parse::<Color>().unwrap_err().to_string();
        assert_eq!(e, "unknown color \"green\": choose one of red, dark-blue");
        assert_eq!(serde_json::to_string(&Color::Red).unwrap(), "\"red\"");
        assert_eq!(
            serde_json::from_str::<Color>("\"dark-blue\"").unwrap(),
            Color::DarkBlue
        );
        assert_eq!(Color::ALL.len(), 2);
    }
}
