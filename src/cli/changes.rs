//! Settings that can be compared field by field: the [`Changes`] trait and the
//! `settings!` macro that writes it for a struct of flags. A leaf of its own, so
//! the flag structs (`args.rs`) and the typed settings (`serve/settings.rs`) both
//! use it without importing each other.

/// Settings that can be compared: the flags whose values differ.
pub(in crate::cli) trait Changes {
    /// Adds to `changed` the flag (without dashes) of each setting that differs
    /// between `self` and `other`.
    fn changes(&self, other: &Self, changed: &mut Vec<String>);
}

/// A struct of settings named like their flags, and its [`Changes`]: each field
/// (`@group`: a struct of settings of its own) compared with `==`.
macro_rules! settings {
    (
        $(#[$sm:meta])*
        $vis:vis struct $name:ident {
            $( @group $(#[$gm:meta])* $gvis:vis $group:ident : $gty:ty, )*
            $( $(#[$fm:meta])* $fvis:vis $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$sm])*
        $vis struct $name {
            $( $(#[$gm])* $gvis $group: $gty, )*
            $( $(#[$fm])* $fvis $field: $ty, )*
        }
        impl $crate::cli::changes::Changes for $name {
            fn changes(&self, other: &Self, changed: &mut Vec<String>) {
                $( $crate::cli::changes::Changes::changes(&self.$group, &other.$group, changed); )*
                $(
                    if self.$field != other.$field {
                        changed.push(stringify!($field).replace('_', "-"));
                    }
                )*
            }
        }
    };
}
pub(in crate::cli) use settings;
