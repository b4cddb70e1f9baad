//! The checks of an OTLP request's shared dictionary, before anything of it is used: every
//! table's entry 0 is its zero value (index 0 means unset), every index is in range, every
//! stack within the normaliser's depth, every link's ids of their lengths.

use super::convert::index;
use super::messages::ProfilesDictionary;
use crate::error::{Error, Result};

/// A table's entry 0 must be its zero value, so that index 0 means "unset".
pub(super) fn check_dictionary(d: &ProfilesDictionary) -> Result<()> {
    fn zero_first<T: Default + PartialEq>(table: &[T], name: &str) -> Result<()> {
        match table.first() {
            Some(first) if *first != T::default() => Err(Error::BadRequest(format!(
                "dictionary.{name}[0] is not the zero value; index 0 of every table means unset"
            ))),
            _ => Ok(()),
        }
    }
    zero_first(&d.mapping_table, "mapping_table")?;
    zero_first(&d.location_table, "location_table")?;
    zero_first(&d.function_table, "function_table")?;
    zero_first(&d.link_table, "link_table")?;
    zero_first(&d.string_table, "string_table")?;
    zero_first(&d.attribute_table, "attribute_table")?;
    zero_first(&d.stack_table, "stack_table")?;
    let strings = d.string_table.len();
    for (i, m) in d.mapping_table.iter().enumerate() {
        let at = format!("dictionary.mapping_table[{i}]");
        index(m.filename_strindex, strings, || {
            format!("{at}.filename_strindex")
        })?;
        for (j, &a) in m.attribute_indices.iter().enumerate() {
            index(a, d.attribute_table.len(), || {
                format!("{at}.attribute_indices[{j}]")
            })?;
        }
    }
    for (i, f) in d.function_table.iter().enumerate() {
        let at = format!("dictionary.function_table[{i}]");
        index(f.name_strindex, strings, || format!("{at}.name_strindex"))?;
        index(f.system_name_strindex, strings, || {
            format!("{at}.system_name_strindex")
        })?;
        index(f.filename_strindex, strings, || {
            format!("{at}.filename_strindex")
        })?;
    }
    for (i, l) in d.location_table.iter().enumerate() {
        let at = format!("dictionary.location_table[{i}]");
        index(l.mapping_index, d.mapping_table.len(), || {
            format!("{at}.mapping_index")
        })?;
        for (j, line) in l.lines.iter().enumerate() {
            index(line.function_index, d.function_table.len(), || {
                format!("{at}.lines[{j}].function_index")
            })?;
        }
    }
    let max_depth = firn_storage::normalize::NormalizeLimits::default().max_stack_depth;
    for (i, s) in d.stack_table.iter().enumerate() {
        if s.location_indices.len() > max_depth {
            return Err(Error::BadRequest(format!(
                "dictionary.stack_table[{i}] has {} locations, the limit is {max_depth}",
                s.location_indices.len()
            )));
        }
        for (j, &l) in s.location_indices.iter().enumerate() {
            let field = format!("dictionary.stack_table[{i}].location_indices[{j}]");
            index(l, d.location_table.len(), || field.clone())?;
            if l == 0 {
                return Err(Error::BadRequest(format!(
                    "{field} is 0, the unset location"
                )));
            }
        }
    }
    for (i, a) in d.attribute_table.iter().enumerate() {
        let at = format!("dictionary.attribute_table[{i}]");
        index(a.key_strindex, strings, || format!("{at}.key_strindex"))?;
        index(a.unit_strindex, strings, || format!("{at}.unit_strindex"))?;
        if let Some(s) = a.value.as_ref().and_then(|v| v.string_value_strindex) {
            index(s, strings, || format!("{at}.value.string_value_strindex"))?;
        }
    }
    for (i, l) in d.link_table.iter().enumerate().skip(1) {
        if l.trace_id.len() != 16 || l.span_id.len() != 8 {
            return Err(Error::BadRequest(format!(
                "dictionary.link_table[{i}] has a {}-byte trace_id and a {}-byte span_id; they are 16 and 8 bytes",
                l.trace_id.len(),
                l.span_id.len()
            )));
        }
    }
    Ok(())
}
