package trialbridge.hapi;

import ca.uhn.fhir.batch2.jobs.config.Batch2JobsConfig;
import ca.uhn.fhir.batch2.jobs.export.BulkDataExportProvider;
import ca.uhn.fhir.batch2.maintenance.JobMaintenanceServiceImpl;
import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.jpa.api.config.ThreadPoolFactoryConfig;
import ca.uhn.fhir.jpa.api.dao.DaoRegistry;
import ca.uhn.fhir.jpa.api.dao.IFhirSystemDao;
import ca.uhn.fhir.jpa.batch2.JpaBatch2Config;
import ca.uhn.fhir.jpa.binary.api.IBinaryStorageSvc;
import ca.uhn.fhir.jpa.binstore.DatabaseBinaryContentStorageSvcImpl;
import ca.uhn.fhir.jpa.config.HapiJpaConfig;
import ca.uhn.fhir.jpa.config.util.HapiEntityManagerFactoryUtil;
import ca.uhn.fhir.jpa.model.config.PartitionSettings;
import ca.uhn.fhir.jpa.model.dialect.HapiFhirH2Dialect;
import ca.uhn.fhir.jpa.model.entity.StorageSettings;
import ca.uhn.fhir.jpa.provider.IJpaSystemProvider;
import ca.uhn.fhir.jpa.provider.JpaCapabilityStatementProvider;
import ca.uhn.fhir.jpa.provider.ValueSetOperationProvider;
import ca.uhn.fhir.jpa.search.DatabaseBackedPagingProvider;
import ca.uhn.fhir.jpa.subscription.channel.config.SubscriptionChannelConfig;
import ca.uhn.fhir.rest.api.EncodingEnum;
import ca.uhn.fhir.rest.server.RestfulServer;
import ca.uhn.fhir.rest.server.provider.ResourceProviderFactory;
import ca.uhn.fhir.rest.server.util.ISearchParamRegistry;
import jakarta.persistence.EntityManagerFactory;
import java.util.Properties;
import javax.sql.DataSource;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.beans.factory.config.BeanPostProcessor;
import org.springframework.beans.factory.config.ConfigurableListableBeanFactory;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.ImportAutoConfiguration;
import org.springframework.boot.autoconfigure.context.PropertyPlaceholderAutoConfiguration;
import org.springframework.boot.autoconfigure.jdbc.DataSourceAutoConfiguration;
import org.springframework.boot.autoconfigure.web.embedded.EmbeddedWebServerFactoryCustomizerAutoConfiguration;
import org.springframework.boot.autoconfigure.web.servlet.HttpEncodingAutoConfiguration;
import org.springframework.boot.autoconfigure.web.servlet.ServletWebServerFactoryAutoConfiguration;
import org.springframework.boot.web.servlet.FilterRegistrationBean;
import org.springframework.boot.web.servlet.ServletRegistrationBean;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.annotation.Import;
import org.springframework.context.annotation.Primary;
import org.springframework.orm.jpa.JpaTransactionManager;
import org.springframework.orm.jpa.LocalContainerEntityManagerFactoryBean;

/**
 * A minimal HAPI FHIR JPA server for local integration tests: H2 in memory, one FHIR version per
 * JVM, a RestfulServer at /fhir/*. Select the version with -Dtrialbridge.fhir.version=R4|R5
 * (or the first program argument); everything else comes from application.properties.
 */
@Configuration
// Only the Boot auto-configurations we need (the classpath also holds Elasticsearch, Thymeleaf,
// Quartz, Hibernate/JPA auto-configurations that must not kick in; HAPI wires JPA itself).
@ImportAutoConfiguration({
	PropertyPlaceholderAutoConfiguration.class,
	ServletWebServerFactoryAutoConfiguration.class,
	EmbeddedWebServerFactoryCustomizerAutoConfiguration.class,
	HttpEncodingAutoConfiguration.class,
	DataSourceAutoConfiguration.class
})
@Import({
	HapiJpaConfig.class,
	JpaBatch2Config.class,
	Batch2JobsConfig.class,
	ThreadPoolFactoryConfig.class,
	SubscriptionChannelConfig.class // in-memory message broker used by batch2 jobs
})
public class HapiServer {

	public static void main(String[] args) {
		String version = System.getProperty("trialbridge.fhir.version", args.length > 0 ? args[0] : "R4");
		Class<?> versionConfig =
				switch (version.toUpperCase()) {
					case "R4" -> R4Config.class;
					case "R5" -> R5Config.class;
					default -> throw new IllegalArgumentException("FHIR version must be R4 or R5, not " + version);
				};
		System.setProperty("trialbridge.fhir.version", version.toUpperCase());
		SpringApplication.run(new Class<?>[] {HapiServer.class, versionConfig}, args);
	}

	/** Storage settings tuned for tests: no search reuse, expunge allowed, referential integrity on. */
	@Bean
	public JpaStorageSettings jpaStorageSettings() {
		JpaStorageSettings s = new JpaStorageSettings();
		s.setReuseCachedSearchResultsForMillis(null);
		s.setResourceClientIdStrategy(JpaStorageSettings.ClientIdStrategyEnum.ALPHANUMERIC);
		s.setExpungeEnabled(true);
		s.setAllowMultipleDelete(true);
		s.setDeleteExpungeEnabled(true);
		s.setEnforceReferentialIntegrityOnWrite(true);
		s.setEnforceReferentialIntegrityOnDelete(true);
		s.setAutoCreatePlaceholderReferenceTargets(false);
		s.setAllowInlineMatchUrlReferences(true);
		s.setIndexMissingFields(StorageSettings.IndexEnabledEnum.ENABLED);
		// FHIR Bulk Data $export (BulkDataExportProvider below): every kick-off starts a fresh job, so an
		// export always reflects the data as it is now (HAPI would otherwise hand back a recent job's
		// files for the same parameters).
		s.setEnableTaskBulkExportJobExecution(true);
		s.setEnableBulkExportJobReuse(false);
		return s;
	}

	/**
	 * Batch2 jobs (e.g. DELETE ...&_expunge=true, a bulk $export) advance one gated step per maintenance
	 * pass, once a minute by default; every 500 ms lets such a delete finish within a second or two, and
	 * an export's four steps wait about 1 s for their passes in all instead of about 4-6 s at 2 s. A pass
	 * with no job to advance is one small query.
	 */
	@Bean
	public static BeanPostProcessor fastBatch2Maintenance() {
		return new BeanPostProcessor() {
			@Override
			public Object postProcessBeforeInitialization(Object bean, String beanName) {
				if (bean instanceof JobMaintenanceServiceImpl maintenance) {
					maintenance.setScheduledJobFrequencyMillis(500);
				}
				return bean;
			}
		};
	}

	@Bean
	public PartitionSettings partitionSettings() {
		return new PartitionSettings();
	}

	@Bean
	public IBinaryStorageSvc binaryStorageSvc() {
		return new DatabaseBinaryContentStorageSvcImpl();
	}

	@Bean
	@Primary
	public LocalContainerEntityManagerFactoryBean entityManagerFactory(
			ConfigurableListableBeanFactory beanFactory,
			FhirContext fhirContext,
			JpaStorageSettings storageSettings,
			DataSource dataSource) {
		LocalContainerEntityManagerFactoryBean emf =
				HapiEntityManagerFactoryUtil.newEntityManagerFactory(beanFactory, fhirContext, storageSettings);
		Properties p = new Properties();
		p.put("hibernate.dialect", HapiFhirH2Dialect.class.getName());
		p.put("hibernate.hbm2ddl.auto", "update");
		p.put("hibernate.search.enabled", "false");
		p.put("hibernate.format_sql", "false");
		p.put("hibernate.show_sql", "false");
		p.put("hibernate.jdbc.batch_size", "20");
		p.put("hibernate.cache.use_query_cache", "false");
		p.put("hibernate.cache.use_second_level_cache", "false");
		p.put("hibernate.cache.use_structured_entries", "false");
		p.put("hibernate.cache.use_minimal_puts", "false");
		p.put("hibernate.archive.scanner", "org.hibernate.boot.archive.scan.internal.DisabledScanner");
		p.put("hibernate.session_factory.statement_inspector", new IdLookupRewrite()); // H2 and HAPI's id lookups
		emf.setJpaProperties(p);
		emf.setPersistenceUnitName("HAPI_PU");
		emf.setDataSource(dataSource);
		return emf;
	}

	@Bean
	@Primary
	public JpaTransactionManager transactionManager(EntityManagerFactory entityManagerFactory) {
		return new JpaTransactionManager(entityManagerFactory);
	}

	@Bean
	public RestfulServer restfulServer(
			IFhirSystemDao<?, ?> systemDao,
			ResourceProviderFactory resourceProviders,
			IJpaSystemProvider systemProvider,
			JpaStorageSettings storageSettings,
			ISearchParamRegistry searchParamRegistry,
			IValidationSupport validationSupport,
			DatabaseBackedPagingProvider pagingProvider,
			ValueSetOperationProvider valueSetOperationProvider,
			DaoRegistry daoRegistry,
			BulkDataExportProvider bulkDataExportProvider) {
		RestfulServer server = new RestfulServer(systemDao.getContext());
		server.registerProviders(resourceProviders.createProviders());
		server.registerProvider(systemProvider);
		server.registerProvider(valueSetOperationProvider);
		server.registerProvider(bulkDataExportProvider); // $export, $export-poll-status (batch2 job)
		JpaCapabilityStatementProvider capabilities = new JpaCapabilityStatementProvider(
				server, systemDao, storageSettings, searchParamRegistry, validationSupport);
		capabilities.setImplementationDescription("trialbridge local HAPI FHIR "
				+ systemDao.getContext().getVersion().getVersion().name() + " server");
		server.setServerConformanceProvider(capabilities);
		server.setPagingProvider(pagingProvider);
		server.setDefaultResponseEncoding(EncodingEnum.JSON);
		server.registerInterceptor(new IfMatchInterceptor(daoRegistry));
		return server;
	}

	@Bean
	public ServletRegistrationBean<RestfulServer> fhirServlet(RestfulServer restfulServer) {
		ServletRegistrationBean<RestfulServer> registration =
				new ServletRegistrationBean<>(restfulServer, "/fhir/*");
		registration.setName("fhir");
		registration.setLoadOnStartup(1);
		return registration;
	}

	/** Bulk export polls: a short Retry-After instead of HAPI's fixed 120 s (see the filter). */
	@Bean
	public FilterRegistrationBean<ExportPollRetryAfterFilter> exportPollRetryAfter(
			@Value("${trialbridge.bulk.retry-after-seconds:1}") int seconds) {
		FilterRegistrationBean<ExportPollRetryAfterFilter> registration =
				new FilterRegistrationBean<>(new ExportPollRetryAfterFilter(seconds));
		registration.addUrlPatterns("/fhir/*");
		registration.setName("exportPollRetryAfter");
		return registration;
	}
}
