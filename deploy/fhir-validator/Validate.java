// Validates FHIR R4 JSON files against the R4 core definitions, offline (no terminology
// server): prints one line per message and, last, "N errors" over all files. Exit 1 on any
// error. Usage: java -cp 'lib/*:.' Validate FILE...
import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;
import ca.uhn.fhir.validation.FhirValidator;
import ca.uhn.fhir.validation.ResultSeverityEnum;
import ca.uhn.fhir.validation.SingleValidationMessage;
import ca.uhn.fhir.validation.ValidationResult;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;

public class Validate {
  public static void main(String[] args) throws Exception {
    FhirContext context = FhirContext.forR4();
    ValidationSupportChain chain = new ValidationSupportChain(
        new DefaultProfileValidationSupport(context),
        new InMemoryTerminologyServerValidationSupport(context),
        new CommonCodeSystemsTerminologyService(context));
    FhirInstanceValidator module = new FhirInstanceValidator(chain);
    module.setNoTerminologyChecks(false);
    FhirValidator validator = context.newValidator().registerValidatorModule(module);
    int errors = 0;
    for (String name : args) {
      String text = Files.readString(Path.of(name), StandardCharsets.UTF_8);
      ValidationResult result = validator.validateWithResult(text);
      for (SingleValidationMessage m : result.getMessages()) {
        boolean error = m.getSeverity().ordinal() >= ResultSeverityEnum.ERROR.ordinal();
        if (error) {
          errors++;
        }
        System.out.println(name + "\t" + m.getSeverity() + "\t" + m.getLocationString()
            + "\t" + m.getMessage());
      }
    }
    System.out.println(errors + " errors");
    System.exit(errors == 0 ? 0 : 1);
  }
}
