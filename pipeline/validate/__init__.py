"""Validation: the row rules (`rules`), checked rows as bounded chunks (`chunks`), and the
same rules inside Spark tasks (`in_spark`). Nothing here touches the database."""
