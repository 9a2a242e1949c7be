//! `GROUP BY` a name column groups by integers: in an aggregate, a group key that is a name —
//! `service_1` of a name view, defined as `dict_get('service', service_id_1)`, or such a call
//! written in the query — is replaced by `dict_canon('service', ...)`, the smallest id carrying
//! that name, and a projection above the aggregate turns each group's id back into its name
//! with `dict_get`. The hash table then holds `u32` keys instead of strings built for every row
//! (a dictionary key of Arrow's row format is its string), and names are looked up once per
//! group.
//!
//! Same groups as by name: ids with equal names have the same canonical id (a pod name may
//! belong to several pods in different namespaces), and 0 and ids missing from the dictionary
//! — a null name — give a null canonical id, one group, as the null name did. The output
//! schema is unchanged (names, types and qualifiers of every column). Grouping sets (`ROLLUP`,
//! `CUBE`) are left alone.

use std::sync::Arc;

use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, Projection, ScalarUDF, cast};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

use crate::name_filter::dict_call;
use crate::query::name_type;

/// The optimizer rule; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct GroupByNameAsIds {
    /// `dict_canon`.
    pub(crate) canon: Arc<ScalarUDF>,
    /// `dict_get`.
    pub(crate) get: Arc<ScalarUDF>,
}

impl OptimizerRule for GroupByNameAsIds {
    fn name(&self) -> &str {
        "deepflow_group_by_name_as_ids"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(&self, plan: LogicalPlan, _config: &dyn OptimizerConfig) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(agg) = plan else {
            return Ok(Transformed::no(plan));
        };
        if agg.group_expr.iter().any(|e| matches!(e, Expr::GroupingSet(_))) {
            return Ok(Transformed::no(LogicalPlan::Aggregate(agg)));
        }
        let dict_type = name_type();
        // (index, kind) of each group key that is a name
        let mut named = Vec::new();
        let mut group = Vec::with_capacity(agg.group_expr.len());
        for (i, e) in agg.group_expr.iter().enumerate() {
            let found = match e {
                Expr::Column(c) => {
                    let is_dict = agg
                        .input
                        .schema()
                        .qualified_field_from_column(c)
                        .is_ok_and(|(_, f)| *f.data_type() == dict_type);
                    kind_of(&agg.input, c).filter(|_| is_dict).map(|k| (k, e.clone()))
                }
                other => dict_call(other),
            };
            match found {
                Some((kind, arg)) => {
                    group.push(call(&self.canon, &kind, arg).alias(format!("__deepflow_group_id_{i}")));
                    named.push((i, kind));
                }
                None => group.push(e.clone()),
            }
        }
        if named.is_empty() {
            return Ok(Transformed::no(LogicalPlan::Aggregate(agg)));
        }
        let old_schema = agg.schema.clone();
        let new_agg = Aggregate::try_new(agg.input.clone(), group, agg.aggr_expr.clone())?;
        let new_schema = new_agg.schema.clone();
        let mut exprs = Vec::with_capacity(new_schema.fields().len());
        for (i, (q, f)) in new_schema.iter().enumerate() {
            let (oq, of) = old_schema.qualified_field(i);
            let col = Expr::Column(Column::new(q.cloned(), f.name()));
            let e = match named.iter().find(|(n, _)| *n == i) {
                Some((_, kind)) => {
                    let name = call(&self.get, kind, col);
                    if *of.data_type() == dict_type { name } else { cast(name, of.data_type().clone()) }
                }
                None => col,
            };
            exprs.push(e.alias_qualified(oq.cloned(), of.name()));
        }
        let proj = Projection::try_new(exprs, Arc::new(LogicalPlan::Aggregate(new_agg)))?;
        Ok(Transformed::yes(LogicalPlan::Projection(proj)))
    }
}

/// `f(kind, arg)`.
fn call(f: &Arc<ScalarUDF>, kind: &str, arg: Expr) -> Expr {
    let kind = Expr::Literal(ScalarValue::Utf8(Some(kind.to_string())), None);
    Expr::ScalarFunction(ScalarFunction::new_udf(f.clone(), vec![kind, arg]))
}

/// The dictionary kind of column `col` of `plan` when it is defined as `dict_get(kind, ...)`,
/// followed through projections, aliases and row-preserving nodes.
fn kind_of(plan: &LogicalPlan, col: &Column) -> Option<String> {
    match plan {
        LogicalPlan::Projection(p) => {
            let idx = p.schema.maybe_index_of_column(col)?;
            // a cast of dict_get is found too; the caller keeps only columns of dict_get's type
            match strip_alias(p.expr.get(idx)?) {
                Expr::Column(c) => kind_of(&p.input, c),
                e => dict_call(e).map(|(k, _)| k),
            }
        }
        LogicalPlan::SubqueryAlias(s) => {
            let idx = s.schema.maybe_index_of_column(col)?;
            let input = s.input.schema();
            if idx >= input.fields().len() {
                return None;
            }
            let (q, f) = input.qualified_field(idx);
            kind_of(&s.input, &Column::new(q.cloned(), f.name()))
        }
        LogicalPlan::Filter(f) => kind_of(&f.input, col),
        LogicalPlan::Sort(s) => kind_of(&s.input, col),
        LogicalPlan::Limit(l) => kind_of(&l.input, col),
        LogicalPlan::Repartition(r) => kind_of(&r.input, col),
        _ => None,
    }
}

fn strip_alias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => strip_alias(&a.expr),
        other => other,
    }
}
